"""Register numbers as manuals print them, as tables: cell in, protocol address out.

Pure functions of gateway/profiles/addresses.py and the cell words of
gateway/profiles/table_cells.py (types, word orders, tables, numbers, headings).
"""

from __future__ import annotations

import pytest

from gateway.profiles.addresses import (
    Conversion,
    Notation,
    Number,
    Reference,
    Resolved,
    modicon,
    parse_number,
    resolve,
)
from gateway.profiles.schema import DataType, Order, Table
from gateway.profiles.table_cells import (
    BOOLISH,
    Field,
    heading,
    parse_order,
    parse_real,
    parse_table,
    parse_type,
)

H, IR, C, D = Table.HOLDING_REGISTER, Table.INPUT_REGISTER, Table.COIL, Table.DISCRETE_INPUT


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("40001", Reference(H, 0, "4xxxx", "40001")),
        ("40002", Reference(H, 1, "4xxxx", "40001")),
        ("49999", Reference(H, 9998, "4xxxx", "40001")),
        ("30011", Reference(IR, 10, "3xxxx", "30001")),
        ("10001", Reference(D, 0, "1xxxx", "10001")),
        ("00001", Reference(C, 0, "0xxxx", "00001")),
        ("09999", Reference(C, 9998, "0xxxx", "00001")),
        ("400001", Reference(H, 0, "4xxxxx", "400001")),
        ("465536", Reference(H, 65535, "4xxxxx", "400001")),
        ("300011", Reference(IR, 10, "3xxxxx", "300001")),
        ("100001", Reference(D, 0, "1xxxxx", "100001")),
        ("000017", Reference(C, 16, "0xxxxx", "000001")),
        (40001, Reference(H, 0, "4xxxx", "40001")),  # a spreadsheet number
        (40001.0, Reference(H, 0, "4xxxx", "40001")),
        ("４０００１", Reference(H, 0, "4xxxx", "40001")),  # full-width digits
        ("40000", None),  # register 0 does not exist in 1-based notation
        ("465537", None),  # past the last register
        ("50001", None),  # 5 names no table
        ("20001", None),
        ("4001", None),  # four digits: a plain number
        ("1234567", None),
        ("0x9C41", None),  # hex is a protocol address, never a reference
        ("9C41h", None),
    ],
)
def test_modicon_references(cell: object, expected: Reference | None) -> None:
    assert modicon(parse_number(cell)) == expected


@pytest.mark.parametrize(
    ("cell", "hex_column", "expected"),
    [
        ("0", False, Number(0, "0")),
        ("0001", False, Number(1, "0001")),
        (" 17 ", False, Number(17, "17")),
        ("40001.0", False, Number(40001, "40001")),
        (7, False, Number(7, "7")),
        (7.0, False, Number(7, "7")),
        ("0x0190", False, Number(400, "0x0190", hex=True)),
        ("0190H", False, Number(400, "0190H", hex=True)),
        ("0190", True, Number(400, "0190", hex=True)),
        ("0FA0", True, Number(4000, "0FA0", hex=True)),
    ],
)
def test_address_cells(cell: object, hex_column: bool, expected: Number) -> None:
    assert parse_number(cell, hex_column) == expected


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("forty", "'forty' is not a register number (write it as 40001, 0x9C41 or 9C41h)"),
        ("0FA0", "'0FA0' is not a register number (write it as 40001, 0x9C41 or 9C41h)"),
        ("", "no address"),
        ("1.5", "'1.5' is not a register number (write it as 40001, 0x9C41 or 9C41h)"),
        (1.5, "1.5 is not a whole number"),
        (float("nan"), "nan is not a whole number"),
        (-3, "-3 is negative"),
        (True, "True is not a register number"),
        ("9" * 40, "'99999999999999999999'... is too long for a register number"),
    ],
)
def test_bad_address_cells(cell: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_number(cell)
    assert str(info.value) == message


def rows(*cells: object, table: Table | None = None) -> list[tuple[str, Number, Table | None]]:
    return [(f"line {i + 2}", parse_number(c), table) for i, c in enumerate(cells)]


@pytest.mark.parametrize(
    ("table_rows", "notation", "expected", "notes"),
    [
        # Detected: every address a reference, each table from its prefix.
        (
            rows("40001", "40003", "30011"),
            Notation.AUTO,
            [(0, H), (2, H), (10, IR)],
            [
                "2 addresses in 4xxxx notation converted to holding_register addresses from 0"
                " (number - 40001, e.g. 40001 -> 0)",
                "1 address in 3xxxx notation converted to input_register addresses from 0"
                " (number - 30001, e.g. 30011 -> 10)",
            ],
        ),
        (
            rows("400001", "400101"),
            Notation.AUTO,
            [(0, H), (100, H)],
            [
                "2 addresses in 4xxxxx notation converted to holding_register addresses from 0"
                " (number - 400001, e.g. 400001 -> 0)"
            ],
        ),
        # Coils whose leading zeros a spreadsheet dropped, in a table that says coil.
        (
            rows("17", "18", table=C) + rows("10001"),
            Notation.AUTO,
            [(16, C), (17, C), (0, D)],
            [
                "2 addresses in 0xxxx notation converted to coil addresses from 0"
                " (number - 00001, e.g. 17 -> 16)",
                "1 address in 1xxxx notation converted to discrete_input addresses from 0"
                " (number - 10001, e.g. 10001 -> 0)",
            ],
        ),
        # Plain protocol addresses: nothing converted.
        (rows("0", "10", "0x0FA0"), Notation.AUTO, [(0, None), (10, None), (4000, None)], []),
        (rows("40001"), Notation.ZERO_BASED, [(40001, None)], []),
        (
            rows("1", "0010"),
            Notation.ONE_BASED,
            [(0, None), (9, None)],
            ["2 addresses converted from 1-based register numbers (number - 1, e.g. 1 -> 0)"],
        ),
        (
            rows("17", "300001"),
            Notation.MODICON,
            [(16, C), (0, IR)],
            [
                "1 address in 0xxxx notation converted to coil addresses from 0"
                " (number - 00001, e.g. 17 -> 16)",
                "1 address in 3xxxxx notation converted to input_register addresses from 0"
                " (number - 300001, e.g. 300001 -> 0)",
            ],
        ),
    ],
)
def test_whole_table_conversion(
    table_rows: list[tuple[str, Number, Table | None]],
    notation: Notation,
    expected: list[tuple[int, Table | None]],
    notes: list[str],
) -> None:
    out = resolve(table_rows, notation)
    assert [(r.address, r.table) for r in out.rows if isinstance(r, Resolved)] == expected
    assert [c.describe() for c in out.conversions] == notes
    assert out.warning is None


@pytest.mark.parametrize(
    ("table_rows", "warning"),
    [
        (
            rows("40001", "12"),
            "line 2: 40001 looks like a Modicon reference, but line 3: 12 does not fit that"
            " notation (or its table): every address is read as written (--modicon or"
            " --one-based to convert them)",
        ),
        (
            rows("40001", table=IR),
            "line 2: 40001 looks like a Modicon reference, but line 2: 40001 does not fit that"
            " notation (or its table): every address is read as written (--modicon or"
            " --one-based to convert them)",
        ),
    ],
)
def test_a_table_half_in_modicon_notation_is_read_as_written(
    table_rows: list[tuple[str, Number, Table | None]], warning: str
) -> None:
    out = resolve(table_rows)
    assert out.rows == [Resolved(n.value, None) for _, n, _t in table_rows]
    assert (out.conversions, out.warning) == ([], warning)


@pytest.mark.parametrize(
    ("table_rows", "notation", "problem"),
    [
        (
            rows("0"),
            Notation.ONE_BASED,
            "address 0 in a table of 1-based register numbers (--one-based)",
        ),
        (rows("70000"), Notation.ZERO_BASED, "address 70000 is past 65535"),
        (rows("0x10000"), Notation.AUTO, "address 65536 is past 65535"),
        (
            rows("20001"),
            Notation.MODICON,
            "20001 is not a Modicon reference"
            " (0xxxx, 1xxxx, 3xxxx or 4xxxx, or six digits: 400001)",
        ),
        (
            rows("30001", table=H),
            Notation.MODICON,
            "a 3xxxx reference is in input_register, but the table column says holding_register",
        ),
    ],
)  # fmt: skip
def test_conversion_problems(
    table_rows: list[tuple[str, Number, Table | None]], notation: Notation, problem: str
) -> None:
    assert resolve(table_rows, notation).rows == [problem]


def test_conversion_describes_its_first_example() -> None:
    conv = Conversion("4xxxx", H, "40001", 3, ("40101", 100))
    assert conv.describe() == (
        "3 addresses in 4xxxx notation converted to holding_register addresses from 0"
        " (number - 40001, e.g. 40101 -> 100)"
    )


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("float32", (DataType.FLOAT32, None)),
        ("REAL4", (DataType.FLOAT32, None)),
        ("Float", (DataType.FLOAT32, None)),
        ("IEEE754", (DataType.FLOAT32, None)),
        ("float (CDAB)", (DataType.FLOAT32, Order.CDAB)),
        ("FLOAT 3412", (DataType.FLOAT32, Order.CDAB)),
        ("UINT32 CDAB", (DataType.UINT32, Order.CDAB)),
        ("DWORD", (DataType.UINT32, None)),
        ("LONG", (DataType.INT32, None)),
        ("INTEGER", (DataType.INT16, None)),
        ("int16_t", (DataType.INT16, None)),
        ("Unsigned", (DataType.UINT16, None)),
        ("WORD", (DataType.UINT16, None)),
        ("double", (DataType.FLOAT64, None)),
        ("LREAL", (DataType.FLOAT64, None)),
        ("ULINT", (DataType.UINT64, None)),
        ("ASCII", (DataType.STRING, None)),
        ("浮点数", (DataType.FLOAT32, None)),
        ("bit", (BOOLISH, None)),
        ("Boolean", (BOOLISH, None)),
    ],
)
def test_type_words(cell: str, expected: tuple[DataType | str, Order | None]) -> None:
    assert parse_type(cell) == expected


def test_unknown_type_suggests_the_nearest() -> None:
    with pytest.raises(ValueError, match=r"unknown type 'flaot'; did you mean 'float'\?"):
        parse_type("flaot")
    with pytest.raises(ValueError, match=r"^unknown type 'quaternion' \(types: bool, int16"):
        parse_type("quaternion")


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("ABCD", Order.ABCD),
        ("cdab", Order.CDAB),
        ("3-4-1-2", Order.CDAB),
        ("Low word first", Order.CDAB),
        ("word swap", Order.CDAB),
        ("Big-endian", Order.ABCD),
        ("1234", Order.ABCD),
        ("byte swap", Order.BADC),
        ("2143", Order.BADC),
        ("little endian", Order.DCBA),
        ("低字在前", Order.CDAB),
    ],
)
def test_word_order_words(cell: str, expected: Order) -> None:
    assert parse_order(cell) == expected


@pytest.mark.parametrize(
    ("cell", "function_column", "expected"),
    [
        ("Holding Register", False, H),
        ("holding_register", False, H),
        ("4x", False, H),
        ("FC03", False, H),
        ("fc 3", False, H),
        ("03", False, H),
        ("03/06", False, H),
        ("0x04", False, IR),
        ("04H", False, IR),
        ("3", True, H),
        ("4", True, IR),
        ("16", True, H),
        ("input register", False, IR),
        ("3x", False, IR),
        ("Coil", False, C),
        ("01/05", False, C),
        ("Discrete input", False, D),
        ("Input status", False, D),
        ("1x", False, D),
        ("保持寄存器", False, H),
    ],
)
def test_table_words(cell: str, function_column: bool, expected: Table) -> None:
    assert parse_table(cell, function_column) == expected


@pytest.mark.parametrize("cell", ["3", "4", "1"])
def test_a_bare_digit_under_a_table_heading_is_ambiguous(cell: str) -> None:
    with pytest.raises(ValueError, match="is ambiguous"):
        parse_table(cell)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (0.1, 0.1),
        ("0.1", 0.1),
        ("0,1", 0.1),
        ("x0.01", 0.01),
        ("×10", 10.0),
        ("1/10", 0.1),
        ("/100", 0.01),
        ("÷10", 0.1),
        ("1e-3", 0.001),
        (-1, -1.0),
    ],
)
def test_numbers_as_written(cell: object, expected: float) -> None:
    assert parse_real(cell) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("cell", ["abc", "inf", "nan", "1/0", "1,000,000", True])
def test_numbers_refused(cell: object) -> None:
    with pytest.raises(ValueError):
        parse_real(cell)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("Address", (Field.ADDRESS, False)),
        ("Address (hex)", (Field.ADDRESS, True)),
        ("Register Address [HEX]", (Field.ADDRESS, True)),
        ("Data Type", (Field.TYPE, False)),
        ("Word order:", (Field.ORDER, False)),
        ("Scale (x)", (Field.SCALE, False)),
        ("Unit", (Field.UNIT, False)),
        ("寄存器地址", (Field.ADDRESS, False)),
        ("功能码", (Field.FUNCTION, False)),
        ("No. of registers", (Field.LENGTH, False)),
        ("Access", None),
        ("", None),
        (None, None),
    ],
)
def test_headings(cell: object, expected: tuple[Field, bool] | None) -> None:
    assert heading(cell) == expected
