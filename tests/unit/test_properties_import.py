"""Property: any register table, however garbled, gives a valid profile or a clear error.

`gateway profiles import` reads files written by people and by vendors'
tools: random cells (text, numbers, NaN, vocabulary words, empty), random
CSV text and bytes, and random workbooks must end as a profile that loads
back to the same points, or as a ProfileError; never as any other exception.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from pathlib import Path

import openpyxl
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import ProfileError
from gateway.plugins import validate_profile
from gateway.profiles.addresses import Notation
from gateway.profiles.importer import Imported, Options, import_sheet, import_table
from gateway.profiles.schema import NAME_RE, Order, Table
from gateway.profiles.table_cells import HEADINGS, Field, heading
from gateway.profiles.table_file import Row, Sheet
from tests.unit.properties import PROPERTY

WORDS = [
    "40001", "30011", "400001", "00001", "0", "1", "17", "65535", "65536", "0x10", "9C41h",
    "float", "REAL4", "int16", "uint32 CDAB", "bit", "bool", "string", "flaot", "coil",
    "discrete input", "FC03", "4x", "3", "CDAB", "3412", "low word first", "x0.1", "1/10",
    "0,1", "1/0", "-1", "2", "15", "16", "mA", "°C", "Flow rate", "flow_rate", "Flow-Rate",
    "瞬时流量", "  ", "",
]  # fmt: skip
HEADING_WORDS = [h for words in HEADINGS.values() for h in words[:3]] + ["Access", "", "R/W"]
# Cells that make sense in a column of each kind, so that rich tables import too.
PLAUSIBLE: dict[Field, list[object]] = {
    Field.TYPE: ["float", "REAL4", "int16", "uint32 CDAB", "bit", "bool", "string", "uint64", ""],
    Field.ORDER: ["CDAB", "3412", "low word first", "ABCD", "byte swap", ""],
    Field.SCALE: ["x0.1", "1/10", "0,1", 0.01, 1, ""],
    Field.DIVISOR: [10, "100", ""],
    Field.OFFSET: [-40, "0.5", ""],
    Field.UNIT: ["mA", "°C", "m³/h", ""],
    Field.TABLE: ["coil", "discrete input", "holding", "input register", "4x", "3x", ""],
    Field.FUNCTION: ["03", "04", "1", "2", "FC03", "03/06", ""],
    Field.DESCRIPTION: ["a note", "", "x: y # z"],
    Field.BIT: [0, 3, 15, ""],
    Field.LENGTH: [1, 2, 4, 8, ""],
    Field.DECIMALS: [0, 1, 3, ""],
}

cells = st.one_of(
    st.none(),
    st.sampled_from(WORDS),
    st.text(max_size=12),
    st.integers(min_value=-10, max_value=500_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
options = st.builds(
    Options,
    kind=st.sampled_from([None, "flow"]),
    max_gap=st.sampled_from([None, 0, 16, 500]),
    table=st.sampled_from([None, *Table]),
    order=st.sampled_from([None, *Order]),
    notation=st.sampled_from(list(Notation)),
)


def check(imported: Imported) -> None:
    """A profile that came out is valid, loads back the same, and has point names."""
    again = validate_profile(yaml.safe_load(imported.text))
    assert again == imported.profile
    for p in imported.profile.points:
        assert re.fullmatch(NAME_RE, p.name), p.name


# openpyxl refuses control characters in cells when writing, as Excel does.
xlsx_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=10
) | st.sampled_from(WORDS)
xlsx_cells = st.one_of(st.none(), xlsx_text, st.integers(-5, 500_000), st.floats(-1e6, 1e6))


@st.composite
def tables(draw: st.DrawFn, cell: st.SearchStrategy[object] = cells) -> list[list[object]]:
    """A heading row with a name and an address column, then rows that are mostly
    plausible (so that some tables import) with garbage anywhere."""
    fields = draw(st.lists(st.sampled_from(list(PLAUSIBLE)), unique=True, max_size=6))
    extra: list[object] = [draw(st.sampled_from(HEADINGS[f][:3])) for f in fields]
    extra += draw(st.lists(st.sampled_from(HEADING_WORDS) | xlsx_text, max_size=2))
    head: list[object] = [
        draw(st.sampled_from(HEADINGS[Field.NAME][:4])),
        draw(st.sampled_from(HEADINGS[Field.ADDRESS][:4])),
        *extra,
    ]
    body: list[list[object]] = []
    for i in range(draw(st.integers(0, 8))):
        # Mostly plausible rows, one cell in a few garbled: some tables must import.
        name = draw(st.sampled_from([f"Point {i}", f"p{i}", f"点{i}"]))
        plausible = [str(i * 4), str(40001 + i * 4), str(30001 + i * 4), f"0x{i * 4:x}", i * 4]
        address = draw(st.sampled_from(plausible))
        rest = [
            draw(st.sampled_from(PLAUSIBLE.get(h[0], [None]) if (h := heading(x)) else [None]))
            for x in extra
        ]
        row = [name, address, *rest]
        if draw(st.integers(0, 3)) == 0:
            row[draw(st.integers(0, len(row) - 1))] = draw(cell)
        body.append(row)
    return [head, *body]


def import_cells(table: list[list[object]], opts: Options) -> None:
    rows = [Row(f"t.csv:{i + 1}", f"line {i + 1}", tuple(r)) for i, r in enumerate(table)]
    sheet = Sheet("t.csv", rows, lambda i: str(i + 1))
    try:
        imported = import_sheet(sheet, opts, "t")
    except ProfileError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        return
    check(imported)


# More examples: a rich table (a string with its length, bits, divisors) is a rare draw.
@settings(PROPERTY, max_examples=400)
@given(table=tables(), opts=options)
def test_garbled_tables_give_a_profile_or_a_profile_error(
    table: list[list[object]], opts: Options
) -> None:
    import_cells(table, opts)


@PROPERTY
@given(table=st.lists(st.lists(cells, max_size=9), min_size=1, max_size=10), opts=options)
def test_random_cells_give_a_profile_or_a_profile_error(
    table: list[list[object]], opts: Options
) -> None:
    import_cells(table, opts)


@PROPERTY
@given(
    body=st.lists(
        st.lists(st.sampled_from(WORDS) | st.text(max_size=6), min_size=2, max_size=5),
        max_size=8,
    ),
    sep=st.sampled_from([",", ";", "\t"]),
    bom=st.booleans(),
    junk=st.text(max_size=20),
)
def test_random_csv_text_gives_a_profile_or_a_profile_error(
    body: list[list[str]], sep: str, bom: bool, junk: str
) -> None:
    lines = [sep.join(["Name", "Address", "Type", "Scale"])]
    lines += [sep.join(r) for r in body] + [junk]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        path.write_text(("\ufeff" if bom else "") + "\n".join(lines), encoding="utf-8")
        try:
            imported = import_table(path, Options(kind="flow"))
        except ProfileError:
            return
        check(imported)


@PROPERTY
@given(raw=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".xlsx"]))
def test_random_bytes_give_a_profile_error(raw: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"t{suffix}"
        path.write_bytes(raw)
        with contextlib.suppress(ProfileError):
            check(import_table(path))


# Fewer examples: each one writes and reads a workbook.
@settings(PROPERTY, max_examples=50)
@given(table=tables(xlsx_cells))
def test_random_workbooks_give_a_profile_or_a_profile_error(table: list[list[object]]) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    for row in table:
        ws.append(row)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.xlsx"
        wb.save(path)
        try:
            imported = import_table(path, Options(kind="flow"))
        except ProfileError:
            return
        check(imported)
