"""``gateway profiles import``: a vendor's register table (CSV or XLSX) as a profile YAML.

Reads the table (``table_file``), finds what each column is and reads the
rows into points (``table_rows``, ``addresses``), checks the whole profile
with the same model as a hand-written one, and writes the YAML: comments say
where each point came from and what was converted. Notes for the integrator
(which column was read as what, conversions, renamed points) go to stderr.
Any problem is a ProfileError naming the file, row and column, and nothing is
written. The written text is loaded back before it is written, so it always
round-trips to the same points.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.errors import GatewayError, ProfileError
from gateway.plugins import validate_profile
from gateway.profiles.addresses import Notation
from gateway.profiles.schema import (
    NAME_RE,
    PROFILE_NAME_RE,
    DataType,
    ModbusProfile,
    Order,
    Table,
)
from gateway.profiles.table_cells import Field, parse_order, parse_table
from gateway.profiles.table_file import Sheet, read_table
from gateway.profiles.table_rows import Layout, RowReader, RowsResult, find_layout

MAX_PROBLEMS = 50
DEFAULT_KIND = "device"


@dataclass(frozen=True)
class Options:
    """Profile-level fields and how to read the table (the command's options)."""

    name: str | None = None  # default: the file name, as a profile name
    kind: str | None = None
    vendor: str = ""
    model: str = ""
    description: str = ""
    max_gap: int | None = None
    table: Table | None = None  # for rows with no table of their own
    order: Order | None = None  # for multi-register points with no order of their own
    notation: Notation = Notation.AUTO
    sheet: str | None = None
    encoding: str = "utf-8"


@dataclass
class Imported:
    """The profile, its YAML text, and the notes for the integrator (stderr lines)."""

    profile: ModbusProfile
    text: str
    notes: list[str] = field(default_factory=list)


def profile_name_of(path: Path) -> str:
    """A file name as a profile name: ``TUF-2000M Modbus.csv`` -> ``tuf-2000m-modbus``."""
    slug = re.sub(r"[^a-z0-9_.-]+", "-", path.stem.casefold()).strip("-._")
    return slug or "imported"


def import_table(path: Path, options: Options = Options()) -> Imported:
    """Import the table in ``path``; raises ProfileError with every problem found."""
    sheet = read_table(path, options.sheet, options.encoding)
    return import_sheet(sheet, options, options.name or profile_name_of(path))


def _column_notes(sheet: Sheet, layout: Layout) -> list[str]:
    labels = [
        (c.index, c.label, f"-> {c.field}" + (" (hex)" if c.hex else ""))
        for c in layout.columns.values()
    ]
    labels += [(j, label, "ignored") for j, label in layout.ignored]
    width = max(len(label) for _, label, _ in labels)
    return [f"columns of {sheet.source} (headings on {layout.header.place}):"] + [
        f"  {label:{width}}  {what}" for _, label, what in sorted(labels)
    ]


def _fail(problems: list[str]) -> ProfileError:
    shown = problems[:MAX_PROBLEMS]
    if len(problems) > MAX_PROBLEMS:
        shown.append(f"... and {len(problems) - MAX_PROBLEMS} more problems")
    return ProfileError(shown[0], shown)


def import_sheet(sheet: Sheet, options: Options, name: str) -> Imported:
    """Import an already read table (see ``import_table``)."""
    layout, rows = find_layout(sheet)
    notes = [f"note: {n}" for n in sheet.notes] + _column_notes(sheet, layout)
    reader = RowReader(
        layout, options.table or Table.HOLDING_REGISTER, options.order, options.notation
    )
    result = reader.read(rows)
    problems = list(result.problems)
    fields: dict[str, Any] = {"name": name, "kind": options.kind or DEFAULT_KIND}
    for key in ("vendor", "model", "description"):
        if value := getattr(options, key):
            fields[key] = value
    if options.max_gap is not None:
        fields["max_gap"] = options.max_gap
    for key, pattern in (("name", PROFILE_NAME_RE), ("kind", NAME_RE)):
        if not re.fullmatch(pattern[1:-1], fields[key]):
            problems.insert(0, f"--{key} {fields[key]!r}: must match {pattern}")
    if problems:
        raise _fail(problems)
    notes += _conversion_notes(layout, result, options)
    data = {
        **fields,
        "points": [p.model_dump(mode="json", exclude_defaults=True) for _, p in result.points],
    }
    try:
        profile = validate_profile(data)
    except ValidationError as exc:
        raise _fail([_where(exc_item, result, fields) for exc_item in exc.errors()]) from None
    assert isinstance(profile, ModbusProfile)
    text = render(sheet, result, fields)
    _check_round_trip(text, profile)
    if options.kind is None:
        notes.append(
            f"note: kind {DEFAULT_KIND!r} (the InfluxDB measurement, and what rules select by);"
            " --kind to name it, e.g. flow, heat_meter"
        )
    return Imported(profile, text, notes)


def _where(err: Any, result: RowsResult, fields: dict[str, Any]) -> str:
    """A profile-level validation error, at the row or option it came from."""
    loc = err["loc"]
    msg = str(err["msg"]).removeprefix("Value error, ")
    if len(loc) >= 2 and loc[0] == "points" and isinstance(loc[1], int):
        return f"{result.points[loc[1]][0].row.where}: {msg}"
    if loc and loc[0] in fields:
        return f"--{str(loc[0]).replace('_', '-')} {fields[loc[0]]!r}: {msg}"
    return msg


def _conversion_notes(layout: Layout, result: RowsResult, options: Options) -> list[str]:
    notes = [f"note: {line}" for line in _conversions(result)]
    if result.warning:
        notes.append(f"warning: {result.warning}")
    tables_known = Field.TABLE in layout.columns or any(c.table for c in result.conversions)
    if not tables_known and options.table is None:
        default = Table.HOLDING_REGISTER
        notes.append(f"note: no table column: every point is read from a {default} (--table)")
    if Field.TYPE not in layout.columns:
        notes.append("note: no type column: every register point is uint16")
    if result.assumed_order:
        n = len(result.assumed_order)
        notes.append(
            f"note: {n} multi-register point{'s' if n > 1 else ''} without a word order:"
            " ABCD (high word first) assumed; --word-order to choose, `gateway probe --orders`"
            " to check"
        )
    renamed = result.renamed
    if renamed:
        notes.append(
            f"note: {len(renamed)} name{'s' if len(renamed) > 1 else ''} changed to point"
            f" name{'s' if len(renamed) > 1 else ''} (letters, digits and _; where that loses"
            " something, the description keeps the table's name):"
        )
        notes += [f"  {e.row.place}: {e.original!r} -> {new}" for e, new in renamed]
    return notes


def _conversions(result: RowsResult) -> list[str]:
    """One line per kind of conversion of the table's numbers."""
    lines = [c.describe() for c in result.conversions]
    hexes = [e.number for e, _ in result.points if e.number is not None and e.number.hex]
    if hexes:
        n = len(hexes)
        lines.append(
            f"{n} address{'es' if n > 1 else ''} read as hexadecimal"
            f" (e.g. {hexes[0].text} -> {hexes[0].value})"
        )
    return lines


def _flow(data: dict[str, Any]) -> str:
    text: str = yaml.safe_dump(
        data, default_flow_style=True, sort_keys=False, allow_unicode=True, width=1 << 30
    )
    return text.strip()


def _one_line(text: str) -> str:
    """Text for a YAML comment: a line break in a file or sheet name must not end it."""
    return " ".join(text.split())


def render(sheet: Sheet, result: RowsResult, fields: dict[str, Any]) -> str:
    """The profile as YAML, one flow mapping per point, commented with its row."""
    count = len(result.points)
    lines = [
        f"# Imported by `gateway profiles import` from {_one_line(sheet.source)}: {count} point"
        + ("s." if count != 1 else ".")
    ]
    lines += [f"# {line[0].upper()}{line[1:]}." for line in _conversions(result)]
    lines.append(
        "# Each point's comment names its row in the table (and the number written there)."
    )
    for key, value in fields.items():
        lines.append(_flow({key: value}).removeprefix("{").removesuffix("}"))
    lines.append("points:")
    for e, p in result.points:
        rest = p.model_dump(mode="json", exclude_defaults=True)
        data = {"name": p.name, "table": p.table.value, "address": p.address, "type": p.type.value}
        if p.count > 1 and p.type is not DataType.STRING:
            data["order"] = p.order.value  # explicit: the word order is what gets mixed up
        data.update((k, v) for k, v in rest.items() if k not in data)
        written = e.number.text if e.number is not None else ""
        where = e.row.place if written == str(p.address) else f"{e.row.place}: {written}"
        lines.append(f"  - {_flow(data)}  # {_one_line(where)}")
    return "\n".join(lines) + "\n"


def _check_round_trip(text: str, profile: ModbusProfile) -> None:
    again = validate_profile(yaml.safe_load(text))
    # A difference is a bug of the renderer, never a problem of the table.
    if not isinstance(again, ModbusProfile) or again != profile:
        raise GatewayError("the generated YAML does not load back to the same profile")


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` in one step: a failed write leaves no half file."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    except OSError as exc:
        raise ProfileError(f"{path}: cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ProfileError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _choice(parse: Any) -> Any:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def cmd_import(args: argparse.Namespace) -> int:
    options = Options(
        name=args.name,
        kind=args.kind,
        vendor=args.vendor or "",
        model=args.model or "",
        description=args.description or "",
        max_gap=args.max_gap,
        table=args.table,
        order=args.word_order,
        notation=args.notation,
        sheet=args.sheet,
        encoding=args.encoding,
    )
    imported = import_table(Path(args.table_file), options)
    if args.output:
        write_atomically(Path(args.output), imported.text)  # first: no notes for a failed write
    else:
        sys.stdout.write(imported.text)
    for line in imported.notes:
        print(line, file=sys.stderr)
    n = len(imported.profile.points)
    points = f"{n} point{'s' if n != 1 else ''}"
    if args.output:
        print(f"wrote {args.output}: profile {imported.profile.name!r}, {points}", file=sys.stderr)
    else:
        print(f"profile {imported.profile.name!r}: {points}", file=sys.stderr)
    return 0


def register_cli(profiles_sub: Any) -> None:
    """``gateway profiles import`` under the ``profiles`` command's subparsers."""
    q = profiles_sub.add_parser(
        "import",
        help="turn a vendor register table (CSV or XLSX) into a profile YAML",
        description="Read a register table (name, address, type, word order, scale, unit,"
        " table columns; common headings are recognised) and print a profile YAML."
        " Modicon references (40001, 300001) are converted to 0-based addresses.",
    )
    q.add_argument("table_file", metavar="TABLE", help="a .csv or .xlsx register table")
    q.add_argument("-o", "--output", metavar="FILE", help="write the profile here, not to stdout")
    q.add_argument("--name", help="profile name (default: from the file name)")
    q.add_argument(
        "--kind", help=f"device kind: the InfluxDB measurement (default: {DEFAULT_KIND})"
    )
    q.add_argument("--vendor")
    q.add_argument("--model")
    q.add_argument("--description")
    q.add_argument("--max-gap", type=int, metavar="N", help="registers a merged read may skip")
    q.add_argument(
        "--table",
        type=_choice(parse_table),
        metavar="TABLE",
        help="table of rows without one (default holding_register)",
    )
    q.add_argument(
        "--word-order",
        type=_choice(parse_order),
        metavar="ORDER",
        help="word order of multi-register values without one (ABCD, CDAB, BADC, DCBA)",
    )
    numbers = q.add_mutually_exclusive_group()
    numbers.set_defaults(notation=Notation.AUTO)
    for flag, notation, text in (
        ("--one-based", Notation.ONE_BASED, "addresses are 1-based register numbers"),
        ("--zero-based", Notation.ZERO_BASED, "addresses are protocol addresses, as written"),
        ("--modicon", Notation.MODICON, "addresses are Modicon references (40001, 300001)"),
    ):
        numbers.add_argument(flag, dest="notation", action="store_const", const=notation, help=text)
    q.add_argument("--sheet", help="the workbook's sheet (default: the first)")
    q.add_argument("--encoding", default="utf-8", help="a CSV's text encoding (default utf-8)")
    q.set_defaults(func=cmd_import)
