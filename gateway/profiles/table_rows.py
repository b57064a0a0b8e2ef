"""From a register table's rows to profile points, with every problem tied to its cell.

Finds the heading row and what each column is, reads each row's cells,
converts the addresses as a whole table (``addresses``), turns names into
point names, and checks what a profile forbids (unknown types, registers of
two points overlapping, one name twice) before the profile model sees them,
so a problem names the row and the column, not a point index.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from gateway.errors import ProfileError
from gateway.profiles.addresses import (
    MAX_ADDRESS,
    Conversion,
    Notation,
    Number,
    Resolved,
    parse_number,
    resolve,
)
from gateway.profiles.schema import NAME_RE, WORDS, DataType, ModbusPoint, Order, Table
from gateway.profiles.table_cells import (
    BOOLISH,
    HEADINGS,
    Field,
    heading,
    parse_order,
    parse_real,
    parse_table,
    parse_type,
    parse_whole,
    text_of,
)
from gateway.profiles.table_file import Row, Sheet

HEADER_SEARCH_ROWS = 30
MAX_NAME = 64
_TABLE_PREFIX = {
    Table.HOLDING_REGISTER: "hr",
    Table.INPUT_REGISTER: "ir",
    Table.COIL: "coil",
    Table.DISCRETE_INPUT: "di",
}
# The fields the profile's point model names, and the columns that fill them.
_FIELD_COLUMNS: dict[str, tuple[Field, ...]] = {
    "name": (Field.NAME,),
    "address": (Field.ADDRESS,),
    "table": (Field.TABLE, Field.FUNCTION),
    "type": (Field.TYPE,),
    "order": (Field.ORDER, Field.TYPE),
    "bit": (Field.BIT,),
    "length": (Field.LENGTH,),
    "scale": (Field.SCALE, Field.DIVISOR),
    "offset": (Field.OFFSET,),
    "decimals": (Field.DECIMALS,),
    "unit": (Field.UNIT,),
    "description": (Field.DESCRIPTION,),
}


@dataclass(frozen=True)
class Column:
    index: int
    field: Field
    label: str  # "column C 'Data type'"
    hex: bool = False


@dataclass
class Layout:
    """Where the headings are and what each column is read as."""

    header: Row
    columns: dict[Field, Column]
    ignored: list[tuple[int, str]]  # (index, label) of headings not read


def find_layout(sheet: Sheet) -> tuple[Layout, list[Row]]:
    """The heading row (the first with two known headings) and the rows under it."""
    for i, row in enumerate(sheet.rows[:HEADER_SEARCH_ROWS]):
        found = [(j, heading(c)) for j, c in enumerate(row.cells)]
        known = [(j, h) for j, h in found if h is not None]
        if len({h[0] for _, h in known}) < 2:
            continue
        columns: dict[Field, Column] = {}
        problems, ignored = [], []
        for j, c in enumerate(row.cells):
            label = f"column {sheet.column_name(j)} {text_of(c)!r}"
            h = heading(c)
            if h is None:
                if text_of(c):
                    ignored.append((j, label))
                continue
            fld = Field.TABLE if h[0] is Field.FUNCTION else h[0]
            if fld in columns:
                problems.append(
                    f"{row.where}: {columns[fld].label} and {label} are both read as {fld};"
                    " rename or delete one"
                )
                continue
            columns[fld] = Column(j, h[0], label, h[1])
        for need in (Field.NAME, Field.ADDRESS):
            if need not in columns:
                read = ", ".join(f"{c.label} as {c.field}" for c in columns.values())
                problems.append(
                    f"{row.where}: no {need} column among the headings ({read}); head it"
                    f" {' or '.join(repr(a) for a in HEADINGS[need][:3])}"
                )
        if problems:
            raise ProfileError(problems[0], problems)
        return Layout(row, columns, ignored), sheet.rows[i + 1 :]
    raise ProfileError(
        f"{sheet.source}: no heading row in the first {HEADER_SEARCH_ROWS} rows: a register"
        " table needs at least a name column (name, point, tag, parameter) and an address"
        " column (address, register)"
    )


@dataclass
class Entry:
    """One row as read, before the profile model sees it."""

    row: Row
    original: str = ""
    name: str = ""  # the point name
    broken: bool = False  # a cell could not be read (and was reported)
    number: Number | None = None
    table: Table | None = None
    type: DataType | str = ""  # "" when the row names none
    type_order: Order | None = None
    values: dict[str, Any] = field(default_factory=dict)
    resolved: Resolved | None = None


@dataclass
class RowsResult:
    """The points of a table and what was done to get them."""

    points: list[tuple[Entry, ModbusPoint]]
    conversions: list[Conversion]
    problems: list[str]
    warning: str | None = None
    assumed_order: list[Entry] = field(default_factory=list)

    @property
    def renamed(self) -> list[tuple[Entry, str]]:
        return [(e, p.name) for e, p in self.points if p.name != e.original]


def _span(p: ModbusPoint) -> str:
    return f"{p.address}" if p.count == 1 else f"{p.address}..{p.address + p.count - 1}"


class RowReader:
    """Reads the data rows of one table into points, collecting every problem."""

    def __init__(
        self,
        layout: Layout,
        default_table: Table = Table.HOLDING_REGISTER,
        default_order: Order | None = None,
        notation: Notation = Notation.AUTO,
    ) -> None:
        self.layout = layout
        self.default_table = default_table
        self.default_order = default_order
        self.notation = notation
        self.found: list[tuple[int, str]] = []  # (row's position, problem)
        self.position: dict[int, int] = {}
        self.assumed_order: list[Entry] = []

    @property
    def problems(self) -> list[str]:
        """Every problem, in the order of the rows."""
        return [p for _, p in sorted(self.found, key=lambda f: f[0])]

    def fail(self, row: Row, fld: Field | None, message: str) -> None:
        col = self.layout.columns.get(fld) if fld is not None else None
        where = f"{row.where}: {col.label}" if col else row.where
        self.found.append((self.position.get(id(row), -1), f"{where}: {message}"))

    def cell(self, row: Row, fld: Field) -> object:
        col = self.layout.columns.get(fld)
        if col is None or col.index >= len(row.cells):
            return None
        value = row.cells[col.index]
        return None if isinstance(value, str) and not value.strip() else value

    def read(self, rows: list[Row]) -> RowsResult:
        while rows and rows[-1].blank:
            rows = rows[:-1]
        self.position = {id(r): i for i, r in enumerate(rows)}
        if not rows:
            self.fail(self.layout.header, None, "no rows under the headings")
        entries = []
        for row in rows:
            if row.blank:
                self.fail(
                    row,
                    None,
                    "empty row inside the table (delete it; the table ends at its last row)",
                )
            else:
                entries.append(self.read_cells(row))
        numbered = [e for e in entries if e.number is not None]
        outcome = resolve(
            [(e.row.place, e.number, e.table) for e in numbered if e.number is not None],
            self.notation,
        )
        for e, r in zip(numbered, outcome.rows, strict=True):
            if isinstance(r, str):
                self.fail(e.row, Field.ADDRESS, r)
            else:
                e.resolved = r
        self.name_points(entries)
        self.same_addresses(entries)
        built = []
        for e in entries:
            if e.resolved is not None and e.name and not e.broken:
                point = self.build(e)
                if point is not None:
                    built.append((e, point))
        points = self.cross_check(built)
        kept = {id(e) for e, _ in points}
        assumed = [e for e in self.assumed_order if id(e) in kept]
        return RowsResult(points, outcome.conversions, self.problems, outcome.warning, assumed)

    def read_cells(self, row: Row) -> Entry:
        before = len(self.found)
        e = Entry(row, original=text_of(self.cell(row, Field.NAME)))
        if not e.original:
            self.fail(row, Field.NAME, "no name")
        columns = self.layout.columns
        parsers: list[tuple[Field, Any]] = [
            (Field.ADDRESS, lambda v: parse_number(v, columns[Field.ADDRESS].hex)),
            (Field.TABLE, lambda v: parse_table(v, columns[Field.TABLE].field is Field.FUNCTION)),
            (Field.TYPE, parse_type),
            (Field.ORDER, parse_order),
            (Field.SCALE, lambda v: parse_real(v, "scale")),
            (Field.DIVISOR, lambda v: parse_real(v, "divisor")),
            (Field.OFFSET, lambda v: parse_real(v, "offset")),
            (Field.BIT, lambda v: parse_whole(v, "bit number")),
            (Field.LENGTH, lambda v: parse_whole(v, "registers")),
            (Field.DECIMALS, lambda v: parse_whole(v, "decimals")),
        ]
        got: dict[Field, Any] = {}
        for fld, parse in parsers:
            value = self.cell(row, fld)
            if value is None:
                if fld is Field.ADDRESS:
                    alone = sum(c is not None and text_of(c) != "" for c in row.cells) == 1
                    hint = " (a section heading? delete the row)" if alone and e.original else ""
                    self.fail(row, fld, f"no address{hint}")
                continue
            try:
                got[fld] = parse(value)
            except ValueError as exc:
                self.fail(row, fld, str(exc))
        e.number = got.get(Field.ADDRESS)
        e.table = got.get(Field.TABLE)
        if Field.TYPE in got:
            e.type, e.type_order = got[Field.TYPE]
        divisor = got.get(Field.DIVISOR, 1.0)
        if divisor == 0:
            self.fail(row, Field.DIVISOR, "a divisor of 0")
            divisor = 1.0
        scale = got.get(Field.SCALE, 1.0) / divisor
        if scale == 0:
            self.fail(row, Field.SCALE, "a scale of 0 makes every value 0")
        elif scale != 1.0:
            e.values["scale"] = scale
        for fld, key in (
            (Field.OFFSET, "offset"),
            (Field.BIT, "bit"),
            (Field.LENGTH, "length"),
            (Field.DECIMALS, "decimals"),
            (Field.ORDER, "order"),
        ):
            if fld in got and not (key == "offset" and got[fld] == 0):
                e.values[key] = got[fld]
        for fld, key in ((Field.UNIT, "unit"), (Field.DESCRIPTION, "description")):
            if text := text_of(self.cell(row, fld)):
                e.values[key] = text
        e.broken = len(self.found) > before
        return e

    def name_points(self, entries: list[Entry]) -> None:
        """Each row's point name; one name twice is a problem (of the later row)."""
        names: dict[str, Entry] = {}
        for e in entries:
            if not e.original:
                continue  # reported as "no name"
            e.name = point_name(e.original)
            if not e.name and e.resolved is not None:
                table = e.resolved.table or e.table or self.default_table
                e.name = f"{_TABLE_PREFIX[table]}_{e.resolved.address}"
            if not e.name:
                continue
            other = names.setdefault(e.name, e)
            if other is not e:
                self.fail(
                    e.row,
                    Field.NAME,
                    f"duplicate name: {e.original!r} is already used on {other.row.place}"
                    if other.original == e.original
                    else f"{e.original!r} becomes {e.name}, the point name of"
                    f" {other.row.place} ({other.original!r}): rename one",
                )
                e.broken = True

    def same_addresses(self, entries: list[Entry]) -> None:
        """Two rows at one address, found even when a row has other problems (its type)."""
        first: dict[tuple[Table, int], Entry] = {}
        for e in entries:
            unknown_table = e.table is None and self.cell(e.row, Field.TABLE) is not None
            if e.resolved is None or unknown_table or e.type == BOOLISH or "bit" in e.values:
                continue  # bit points may share a register; checked once built
            table = e.resolved.table or e.table or self.default_table
            other = first.setdefault((table, e.resolved.address), e)
            if other is not e:
                self.fail(
                    e.row,
                    Field.ADDRESS,
                    f"duplicate address: {table} {e.resolved.address} is already"
                    f" {other.name or other.original!r} ({other.row.place})",
                )
                e.broken = True

    def data_type(self, e: Entry, table: Table) -> DataType | None:
        """The point's type from the type cell, the table and a bit cell."""
        has_bit = "bit" in e.values
        written = text_of(self.cell(e.row, Field.TYPE))
        if table.is_bit:
            if e.type in ("", BOOLISH):
                return DataType.BOOL
            self.fail(e.row, Field.TYPE, f"a {table} holds one bit: type bool, not {written!r}")
            return None
        if e.type == BOOLISH or (e.type == "" and has_bit):
            if not has_bit:
                self.fail(
                    e.row,
                    Field.TYPE,
                    f"type {written!r} in a {table}: name the bit (0..15) in a bit column,"
                    " or read it from a coil or discrete_input",
                )
                return None
            return DataType.BIT
        dtype = DataType.UINT16 if e.type == "" else DataType(e.type)
        if has_bit:
            self.fail(e.row, Field.BIT, f"a bit number is for type bit, not {dtype}")
            return None
        return dtype

    def size(self, e: Entry, dtype: DataType, values: dict[str, Any]) -> bool:
        """Check the row's register count against its type; a string takes it as its length."""
        length = values.pop("length", None)
        if dtype is DataType.STRING:
            if length is None:
                self.fail(e.row, Field.TYPE, "type string needs its registers in a length column")
                return False
            values["length"] = length
            return True
        words = WORDS[dtype]
        if length is not None and length != words:
            plural = "s" if words > 1 else ""
            self.fail(
                e.row, Field.LENGTH, f"type {dtype} takes {words} register{plural}, not {length}"
            )
            return False
        return True

    def word_order(self, e: Entry, dtype: DataType, values: dict[str, Any]) -> bool:
        order = values.pop("order", None)
        if e.type_order is not None:
            if order is not None and order != e.type_order:
                self.fail(
                    e.row, Field.ORDER, f"{order} contradicts {e.type_order} in the type column"
                )
                return False
            order = e.type_order
        if order is None and dtype is not DataType.STRING and WORDS[dtype] > 1:
            order = self.default_order
            if order is None:
                self.assumed_order.append(e)
        if order is not None:
            values["order"] = order.value
        return True

    def build(self, e: Entry) -> ModbusPoint | None:
        assert e.resolved is not None
        table = e.resolved.table or e.table or self.default_table
        dtype = self.data_type(e, table)
        values = dict(e.values)
        if dtype is None or not self.size(e, dtype, values):
            return None
        if not self.word_order(e, dtype, values):
            return None
        count = values["length"] if dtype is DataType.STRING else WORDS[dtype]
        last = e.resolved.address + count - 1
        if last > MAX_ADDRESS:
            self.fail(e.row, Field.ADDRESS, f"a {dtype} here would run past address {MAX_ADDRESS}")
            return None
        if "description" not in values and not _plain_spelling(e.original, e.name):
            values["description"] = e.original
        data: dict[str, Any] = {
            "name": e.name,
            "table": table.value,
            "address": e.resolved.address,
            "type": dtype.value,
            **values,
        }
        try:
            return ModbusPoint.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                key = str(err["loc"][0]) if err["loc"] else "type"
                cols = [c for c in _FIELD_COLUMNS.get(key, ()) if c in self.layout.columns]
                msg = err["msg"].removeprefix("Value error, ")
                self.fail(e.row, cols[0] if cols else None, msg)
            return None

    def cross_check(
        self, built: list[tuple[Entry, ModbusPoint]]
    ) -> list[tuple[Entry, ModbusPoint]]:
        """One point per register (and per bit of a register for bit points)."""
        owner: dict[tuple[Table, int], tuple[Entry, ModbusPoint]] = {}
        bits: dict[tuple[Table, int, int | None], tuple[Entry, ModbusPoint]] = {}
        kept = []
        for e, p in built:
            if p.type is DataType.BIT:
                key = (p.table, p.address, p.bit)
                if key in bits:
                    oe, op = bits[key]
                    self.fail(
                        e.row,
                        Field.BIT,
                        f"duplicate address: bit {p.bit} of {p.table} {p.address} is already"
                        f" {op.name!r} ({oe.row.place})",
                    )
                    continue
                bits[key] = (e, p)
            else:
                span = range(p.address, p.address + p.count)
                clash = next((owner[(p.table, a)] for a in span if (p.table, a) in owner), None)
                if clash is not None:
                    oe, op = clash
                    self.fail(
                        e.row,
                        Field.ADDRESS,
                        f"duplicate address: {p.table} {p.address} is already {op.name!r}"
                        f" ({oe.row.place})"
                        if op.address == p.address
                        else f"{p.table} {_span(p)} ({p.type}) overlaps {op.name!r} at"
                        f" {_span(op)} ({op.type}, {oe.row.place})",
                    )
                    continue
                for a in span:
                    owner[(p.table, a)] = (e, p)
            kept.append((e, p))
        return kept


def _plain_spelling(original: str, name: str) -> bool:
    """Whether ``name`` says all ``original`` does (``Flow Rate`` is ``flow_rate``)."""
    return re.sub(r"[\s._-]+", "_", original.strip()).casefold() == name


def point_name(text: str) -> str:
    """A table's name as a point name: ASCII, lower case, words joined by ``_``; "" if none.

    ``Flow Rate (m³/h)`` -> ``flow_rate_m3_h``; a leading digit gets ``p_``.
    """
    text = text.replace("%", " pct ").replace("+", " plus ")
    ascii_ = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9]+", "_", ascii_).strip("_").lower()
    if slug[:1].isdigit():
        slug = "p_" + slug
    slug = slug[:MAX_NAME].rstrip("_")
    return slug if re.fullmatch(NAME_RE[1:-1], slug) else ""
