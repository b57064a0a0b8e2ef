"""Reading a register table from CSV or XLSX into rows that know where they came from.

CSV as Excel writes it: UTF-8 with or without a BOM (``--encoding`` for
others), ``,`` ``;`` or tab between cells (sniffed), quoted cells over several
lines. XLSX through openpyxl, read-only and with the values formulas last
computed, one sheet (the first unless named). Every row carries its location,
``file:line`` for CSV and ``file:sheet!row`` for a workbook, and columns are
named as the file shows them (3 in CSV, C in a workbook), so every later
message can point at the cell. Files are bounded in size, rows and columns.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ProfileError
from gateway.yamlfile import read_bounded

MAX_FILE_BYTES = 8 * 1024 * 1024
# A workbook's parts once unzipped (sheets, shared strings): bounds a zip bomb.
MAX_UNZIPPED_BYTES = 64 * 1024 * 1024
MAX_ROWS = 10_000
MAX_COLUMNS = 64


@dataclass(frozen=True)
class Row:
    """One row of the table: where it is (``regs.csv:5``), the short form (``line 5``,
    ``Registers!5``) for naming another row in a message, and its cells."""

    where: str
    place: str
    cells: tuple[object, ...]

    @property
    def blank(self) -> bool:
        return all(c is None or (isinstance(c, str) and not c.strip()) for c in self.cells)


@dataclass
class Sheet:
    """The rows of one table and how its columns are named."""

    source: str  # "regs.csv", "regs.xlsx, sheet 'Modbus map'"
    rows: list[Row]
    column_name: Callable[[int], str]  # 0-based index -> "3" or "C"
    notes: list[str] = field(default_factory=list)


def read_table(path: Path, sheet: str | None = None, encoding: str = "utf-8") -> Sheet:
    """The table in ``path`` (``.csv`` or ``.xlsx``); every problem is a ProfileError."""
    suffix = path.suffix.casefold()
    if suffix in (".xlsx", ".xlsm"):
        return _read_xlsx(path, sheet)
    if sheet is not None:
        raise ProfileError(f"{path}: --sheet is for workbooks (.xlsx), this is a {suffix} file")
    if suffix in (".csv", ".txt", ".tsv"):
        return _read_csv(path, encoding)
    raise ProfileError(f"{path}: a register table is a .csv or .xlsx file (save .xls as .xlsx)")


def _decode(path: Path, raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(
            "utf-8-sig" if encoding.casefold().replace("_", "-") in ("utf-8", "utf8") else encoding
        )
    except LookupError:
        raise ProfileError(f"--encoding {encoding!r}: unknown encoding") from None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ProfileError(
            f"{path}:{line}: not {encoding} text (byte 0x{raw[exc.start]:02x}): save it as"
            " 'CSV UTF-8' or name its encoding, e.g. --encoding gbk"
        ) from None


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    declared = _EXCEL_SEP.match(text)
    if declared is not None:  # Excel's own hint: "sep=;" on the first line
        sep = declared.group(1)

        class Declared(csv.excel):
            delimiter = sep

        return Declared
    sample = "\n".join(text.splitlines()[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        best = max(",;\t", key=first.count)

        class Guessed(csv.excel):
            delimiter = best

        return Guessed


_EXCEL_SEP = re.compile(r"sep=(.)\r?\n")


def _past_limit(row: Row) -> bool:
    """Whether a row past MAX_ROWS ends the reading (blank: the table has ended) or is
    an error (raised here)."""
    if not row.blank:
        raise ProfileError(f"{row.where}: more than {MAX_ROWS} rows")
    return True


def _read_csv(path: Path, encoding: str) -> Sheet:
    text = _decode(path, read_bounded(path, MAX_FILE_BYTES), encoding)
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise ProfileError(f"{path}:{line}: NUL byte: this is not a text table")
    dialect = _dialect(text)
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    rows: list[Row] = []
    start = 1
    try:
        if _EXCEL_SEP.match(text):
            next(reader)
            start = 2
        for cells in reader:
            if len(cells) > MAX_COLUMNS and any(c.strip() for c in cells[MAX_COLUMNS:]):
                raise ProfileError(f"{path}:{start}: more than {MAX_COLUMNS} columns")
            row = Row(f"{path}:{start}", f"line {start}", tuple(cells[:MAX_COLUMNS]))
            if len(rows) >= MAX_ROWS and _past_limit(row):
                break
            rows.append(row)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ProfileError(f"{path}:{start}: cannot read the CSV row: {exc}") from None
    return Sheet(path.name, rows, lambda i: str(i + 1))


def _sheet_ref(title: str) -> str:
    """A sheet name as Excel writes it in a reference: quoted when not a plain word."""
    if title.replace("_", "").isalnum():
        return title
    return "'" + title.replace("'", "''") + "'"


def _xlsx_rows(ws: Any, path: Path, ref: str) -> Iterator[Row]:
    for n, cells in enumerate(
        ws.iter_rows(min_row=1, max_row=MAX_ROWS + 1, max_col=MAX_COLUMNS, values_only=True),
        start=1,
    ):
        row = Row(f"{path}:{ref}!{n}", f"{ref}!{n}", tuple(cells))
        if n > MAX_ROWS and _past_limit(row):
            return
        yield row


def _read_xlsx(path: Path, sheet: str | None) -> Sheet:
    read_bounded(path, MAX_FILE_BYTES)  # the size bound, and a readable file
    try:
        with zipfile.ZipFile(path) as zf:
            unzipped = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise ProfileError(f"{path}: not an .xlsx workbook ({exc})") from None
    if unzipped > MAX_UNZIPPED_BYTES:
        raise ProfileError(f"{path}: unzips to more than {MAX_UNZIPPED_BYTES // 2**20} MiB")
    try:
        from openpyxl import load_workbook
        from openpyxl.utils import get_column_letter
    except ImportError:  # pragma: no cover - a declared dependency
        raise ProfileError("reading .xlsx needs openpyxl (pip install openpyxl)") from None
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds on a damaged workbook
        raise ProfileError(f"{path}: cannot read the workbook: {exc}") from None
    try:
        names = wb.sheetnames
        if sheet is None:
            title = names[0]
        elif sheet in names:
            title = sheet
        else:
            raise ProfileError(f"{path}: no sheet {sheet!r} (sheets: {', '.join(names)})")
        ws: Any = wb[title]  # a read-only worksheet, or a chart sheet
        if not hasattr(ws, "iter_rows"):
            raise ProfileError(f"{path}: sheet {title!r} is a chart, not a table")
        ws.reset_dimensions()  # some writers store wrong ones, which would cut rows off
        ref = _sheet_ref(title)
        try:
            rows = list(_xlsx_rows(ws, path, ref))
        except ProfileError:
            raise
        except Exception as exc:  # a damaged sheet part: openpyxl's errors vary
            raise ProfileError(f"{path}:{ref}: cannot read the sheet: {exc}") from None
    finally:
        wb.close()
    notes = []
    if len(names) > 1:
        notes.append(
            f"read sheet {title!r} of {len(names)} ({', '.join(names)}); --sheet to choose"
        )
    return Sheet(f"{path.name}, sheet {title!r}", rows, lambda i: get_column_letter(i + 1), notes)
