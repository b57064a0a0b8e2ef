"""Register numbers as vendor tables print them, and the protocol addresses they mean.

A Modbus request carries a 0-based address, but manuals often print 1-based
register numbers or Modicon references, where a leading digit names the
table (0 coil, 1 discrete input, 3 input register, 4 holding register) and
the rest is 1-based: five digits (40001 is holding register 0, up to 49999)
or six (400001 is holding register 0, up to 465536). This module reads
address cells and converts a whole table at once, because a number means one
thing throughout a manual: a table is read as Modicon references only when
every address fits that notation.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from gateway.profiles.schema import Table

MAX_ADDRESS = 65535

PREFIX_TABLE: dict[str, Table] = {
    "0": Table.COIL,
    "1": Table.DISCRETE_INPUT,
    "3": Table.INPUT_REGISTER,
    "4": Table.HOLDING_REGISTER,
}

_DECIMAL = re.compile(r"[0-9]+(?:\.0+)?")
_HEX_PREFIXED = re.compile(r"0[xX]([0-9A-Fa-f]+)")
_HEX_SUFFIXED = re.compile(r"([0-9A-Fa-f]+)[hH]")
_HEX_BARE = re.compile(r"[0-9A-Fa-f]+")
_MAX_DIGITS = 12


class Notation(StrEnum):
    """How the table's address numbers are read."""

    AUTO = "auto"  # Modicon references when every address is one, else as written
    ZERO_BASED = "zero-based"  # protocol addresses, as written
    ONE_BASED = "one-based"  # 1-based register numbers: number - 1
    MODICON = "modicon"  # every address is a Modicon reference


@dataclass(frozen=True)
class Number:
    """An address cell: its value and how it was written."""

    value: int
    text: str  # the decimal digits as written (leading zeros kept), or the hex text
    hex: bool = False


def parse_number(cell: object, hex_column: bool = False) -> Number:
    """An address cell as a Number; ValueError with a message for anything else.

    Decimal (leading zeros kept, so 00001 stays a coil reference), ``0x9C41``,
    ``9C41h``, or bare hex digits under a heading that says hex. Spreadsheet
    numbers must be whole.
    """
    if isinstance(cell, bool):
        raise ValueError(f"{cell!r} is not a register number")
    if isinstance(cell, int):
        if cell < 0:
            raise ValueError(f"{cell} is negative")
        cell = str(cell)
    elif isinstance(cell, float):
        if cell != cell or cell in (float("inf"), float("-inf")) or not cell.is_integer():
            raise ValueError(f"{cell!r} is not a whole number")
        if cell < 0:
            raise ValueError(f"{cell:g} is negative")
        cell = str(int(cell))
    text = unicodedata.normalize("NFKC", str(cell)).strip()
    if len(text) > _MAX_DIGITS + 2:
        raise ValueError(f"{text[:20]!r}... is too long for a register number")
    if (m := _HEX_PREFIXED.fullmatch(text)) or (m := _HEX_SUFFIXED.fullmatch(text)):
        return Number(int(m.group(1), 16), text, hex=True)
    if hex_column and _HEX_BARE.fullmatch(text):
        return Number(int(text, 16), text, hex=True)
    if _DECIMAL.fullmatch(text):
        digits = text.split(".")[0]
        return Number(int(digits), digits)
    raise ValueError(
        f"{text!r} is not a register number (write it as 40001, 0x9C41 or 9C41h)"
        if text
        else "no address"
    )


@dataclass(frozen=True)
class Reference:
    """What a Modicon reference means."""

    table: Table
    address: int
    label: str  # the notation: "4xxxx", "4xxxxx"
    base: str  # the number that is address 0: "40001", "400001"


def modicon(number: Number, lost_zeros: bool = False) -> Reference | None:
    """The Modicon reference ``number`` is, or None.

    ``lost_zeros``: a number of up to four digits is a 0xxxx coil reference
    whose leading zeros a spreadsheet dropped (00017 stored as 17).
    """
    if number.hex:
        return None
    digits = number.text
    if len(digits) in (5, 6) and digits[0] in PREFIX_TABLE:
        rest = int(digits[1:])
        top = 9999 if len(digits) == 5 else MAX_ADDRESS + 1
        if 1 <= rest <= top:
            tail = "x" * (len(digits) - 1)
            base = digits[0] + "0" * (len(digits) - 2) + "1"
            return Reference(PREFIX_TABLE[digits[0]], rest - 1, digits[0] + tail, base)
        return None
    if lost_zeros and len(digits) <= 4 and 1 <= number.value <= 9999:
        return Reference(Table.COIL, number.value - 1, "0xxxx", "00001")
    return None


@dataclass(frozen=True)
class Resolved:
    """One row's address after conversion."""

    address: int
    table: Table | None  # from a Modicon prefix; None: the row's own table column decides
    reference: Reference | None = None


@dataclass
class Conversion:
    """One kind of conversion applied to the table, for the notes and the YAML comment."""

    label: str
    table: Table | None
    base: str
    count: int
    example: tuple[str, int]

    def describe(self) -> str:
        number, address = self.example
        points = f"{self.count} address{'es' if self.count != 1 else ''}"
        if self.table is None:
            return (
                f"{points} converted from 1-based register numbers"
                f" (number - 1, e.g. {number} -> {address})"
            )
        return (
            f"{points} in {self.label} notation converted to {self.table} addresses from 0"
            f" (number - {self.base}, e.g. {number} -> {address})"
        )


@dataclass
class Outcome:
    """A whole table's addresses: per row a Resolved or an error message."""

    rows: list[Resolved | str]
    conversions: list[Conversion]
    warning: str | None = None


def _in_range(value: int) -> str | None:
    return None if value <= MAX_ADDRESS else f"address {value} is past {MAX_ADDRESS}"


def _conflict(ref: Reference, declared: Table | None) -> str | None:
    if declared is None or declared == ref.table:
        return None
    return f"a {ref.label} reference is in {ref.table}, but the table column says {declared}"


def resolve(
    rows: list[tuple[str, Number, Table | None]], notation: Notation = Notation.AUTO
) -> Outcome:
    """Convert every row's address: ``(place, number, table its row declares)`` each.

    ``place`` names the row in a warning (``line 5``).
    """
    if notation is Notation.AUTO:
        refs = [modicon(n, lost_zeros=t is Table.COIL) for _, n, t in rows]
        looks = [i for i, (_, n, _t) in enumerate(rows) if modicon(n) is not None]
        misfits = [
            i for i, r in enumerate(refs) if r is None or _conflict(r, rows[i][2]) is not None
        ]
        if looks and not misfits:
            notation = Notation.MODICON
        elif looks:
            first, odd = rows[looks[0]], rows[misfits[0]]
            warning = (
                f"{first[0]}: {first[1].text} looks like a Modicon reference, but {odd[0]}:"
                f" {odd[1].text} does not fit that notation (or its table): every address is"
                " read as written (--modicon or --one-based to convert them)"
            )
            out = _plain(rows, 0)
            out.warning = warning
            return out
        else:
            return _plain(rows, 0)
    if notation is Notation.ZERO_BASED:
        return _plain(rows, 0)
    if notation is Notation.ONE_BASED:
        return _plain(rows, 1)
    return _modicon(rows)


def _plain(rows: list[tuple[str, Number, Table | None]], minus: int) -> Outcome:
    out: list[Resolved | str] = []
    conv: Conversion | None = None
    for _, n, _t in rows:
        address = n.value - minus
        if address < 0:
            out.append(f"address {n.text} in a table of 1-based register numbers (--one-based)")
        elif (problem := _in_range(address)) is not None:
            out.append(problem)
        else:
            out.append(Resolved(address, None))
            if minus:
                if conv is None:
                    conv = Conversion("1-based", None, "1", 0, (n.text, address))
                conv.count += 1
    return Outcome(out, [conv] if conv else [])


def _modicon(rows: list[tuple[str, Number, Table | None]]) -> Outcome:
    out: list[Resolved | str] = []
    kinds: dict[str, Conversion] = {}
    for _, n, declared in rows:
        ref = modicon(n, lost_zeros=True)
        if ref is None:
            out.append(
                f"{n.text} is not a Modicon reference"
                " (0xxxx, 1xxxx, 3xxxx or 4xxxx, or six digits: 400001)"
            )
            continue
        if (problem := _conflict(ref, declared)) is not None:
            out.append(problem)
            continue
        out.append(Resolved(ref.address, ref.table, ref))
        conv = kinds.setdefault(
            ref.label, Conversion(ref.label, ref.table, ref.base, 0, (n.text, ref.address))
        )
        conv.count += 1
    return Outcome(out, list(kinds.values()))  # in the order the table first uses each
