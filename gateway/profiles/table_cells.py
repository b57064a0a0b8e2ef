"""The words vendor register tables use, and what each cell means in a profile.

Headings (``Register``, ``Data type``, ``Word order``, ``倍率``...), type names
(``REAL4``, ``DWORD``, ``float (CDAB)``), word orders (``3412``, ``low word
first``), tables and function codes (``4x``, ``FC03``, ``input register``)
and numbers as spreadsheets and manuals write them (``x0.1``, ``1/10``, a
decimal comma). Every parser raises ValueError with a message that can stand
after the cell's location.
"""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
from enum import StrEnum

from gateway.profiles.schema import DataType, Order, Table


class Field(StrEnum):
    """What a column of the table is read as."""

    NAME = "name"
    ADDRESS = "address"
    TYPE = "type"
    ORDER = "order"
    SCALE = "scale"
    DIVISOR = "divisor"
    OFFSET = "offset"
    UNIT = "unit"
    TABLE = "table"
    FUNCTION = "function code"
    DESCRIPTION = "description"
    BIT = "bit"
    LENGTH = "length"
    DECIMALS = "decimals"


# Headings as vendors write them; compared in lower case, punctuation as spaces.
_HEADING_WORDS: dict[Field, str] = {
    Field.NAME: (
        "name|point|point name|tag|tag name|parameter|parameter name|variable|"
        "variable name|signal|signal name|register name|item|"
        "名称|参数|参数名称|变量名|变量名称|名字|数据名称"
    ),
    Field.ADDRESS: (
        "address|addr|register|register address|reg|reg address|modbus address|"
        "start address|starting address|register number|register no|reg no|地址|寄存器地址|"
        "寄存器|起始地址|通讯地址"
    ),
    Field.TYPE: (
        "type|data type|datatype|format|data format|value type|variable type|数据类型|类型|数据格式"
    ),
    Field.ORDER: (
        "word order|byte order|order|endian|endianness|endianess|swap|word swap|字节序|"
        "字序|字节顺序"
    ),
    Field.SCALE: (
        "scale|scaling|factor|scale factor|multiplier|gain|resolution|coefficient|倍率|"
        "系数|比例|变比"
    ),
    Field.DIVISOR: "divisor|div|divide by|除数",
    Field.OFFSET: "value offset|offset value|偏移量",
    Field.UNIT: "unit|units|eng unit|engineering unit|engineering units|uom|单位",
    Field.TABLE: (
        "table|register type|reg type|area|memory area|data area|object type|寄存器类型|区域|数据区"
    ),
    Field.FUNCTION: "fc|function|function code|func|read function|功能码",
    Field.DESCRIPTION: (
        "description|desc|comment|comments|remark|remarks|note|notes|meaning|描述|说明|备注|含义"
    ),
    Field.BIT: "bit|bit no|bit number|bit index|位|位号",
    Field.LENGTH: (
        "length|len|registers|number of registers|no of registers|quantity|count|"
        "words|word count|reg count|register count|长度|寄存器数量|数量"
    ),
    Field.DECIMALS: "decimals|decimal places|小数位|小数位数",
}
HEADINGS: dict[Field, tuple[str, ...]] = {
    f: tuple(words.split("|")) for f, words in _HEADING_WORDS.items()
}
_HEADING_FIELD = {alias: f for f, aliases in HEADINGS.items() for alias in aliases}


def text_of(cell: object) -> str:
    """A cell as written, spaces collapsed; whole spreadsheet numbers without ``.0``."""
    if cell is None:
        return ""
    if isinstance(cell, float) and cell.is_integer():
        cell = int(cell)
    return " ".join(str(cell).split())


def folded(cell: object) -> str:
    """A cell to match against words and numbers: NFKC (full-width ``４００`` is ``400``)."""
    return " ".join(unicodedata.normalize("NFKC", text_of(cell)).split())


def _words(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", text.casefold()))


def heading(cell: object) -> tuple[Field, bool] | None:
    """The field a heading names, and whether it says its numbers are hex; None: unknown.

    ``Address (hex)``, ``Scale [x]`` and ``Unit:`` are read without their decorations.
    """
    text = folded(cell)
    if not text:
        return None
    says_hex = "hex" in _words(text).split()
    for candidate in (text, re.sub(r"[(\[（【].*?[)\]）】]", " ", text)):
        field = _HEADING_FIELD.get(_words(candidate))
        if field is not None:
            return field, says_hex and field is Field.ADDRESS
    return None


# A cell of the type column: a DataType, or BOOLISH (bool in a bit table, bit in a register).
BOOLISH = "bool"
_TYPE_ALIASES: dict[str, DataType | str] = {}
for _canonical, _aliases in (
    (BOOLISH, "bool boolean bit binary coil digital onoff 开关量 布尔 位"),
    (DataType.INT16, "int16 sint16 i16 s16 int short signed signed16 integer smallint 整数 整型"),
    (DataType.UINT16, "uint16 u16 ushort word unsigned uint unsigned16 无符号整数 无符号整型"),
    (DataType.INT32, "int32 sint32 i32 s32 dint long longint signed32 长整型 长整数"),
    (DataType.UINT32, "uint32 u32 udint dword ulong unsignedlong unsigned32 无符号长整型"),
    (DataType.INT64, "int64 sint64 i64 s64 lint longlong"),
    (DataType.UINT64, "uint64 u64 ulint lword ulonglong unsigned64"),
    (
        DataType.FLOAT32,
        "float32 float f32 real real4 single fp32 float4 ieee754 ieee754float ieeefloat"
        " 浮点 浮点数 浮点型 单精度",
    ),
    (DataType.FLOAT64, "float64 double f64 lreal real8 fp64 float8 双精度"),
    (DataType.STRING, "string str ascii char chars text 字符串"),
):
    for _alias in _aliases.split():
        _TYPE_ALIASES[_alias] = _canonical
_TYPE_HELP = (
    "types: bool, int16, uint16, int32, uint32, int64, uint64, float32, float64, string, bit;"
    " also names such as float, real, word, dword, long, double"
)
_ORDER_IN_TYPE = re.compile(r"\b(abcd|cdab|badc|dcba|1234|3412|2143|4321)\b", re.IGNORECASE)
_TYPE_SUFFIXES = re.compile(r"(?:_?t|bit|bits)$")


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.7)
    return f"; did you mean {close[0]!r}?" if close else ""


def parse_type(cell: object) -> tuple[DataType | str, Order | None]:
    """A type cell: the type (or BOOLISH) and a word order written inside it (``float CDAB``)."""
    text = folded(cell)
    order = None
    if m := _ORDER_IN_TYPE.search(text):
        order = parse_order(m.group(1))
        text = text[: m.start()] + text[m.end() :]
    key = re.sub(r"[\s_\-()\[\]（）,]", "", text.casefold())
    found = _TYPE_ALIASES.get(key) or _TYPE_ALIASES.get(_TYPE_SUFFIXES.sub("", key))
    if found is None:
        shown = text_of(cell)
        raise ValueError(
            f"unknown type {shown!r}{_suggest(key, sorted(_TYPE_ALIASES))} ({_TYPE_HELP})"
        )
    return found, order


_ORDER_ALIASES: dict[str, Order] = {}
for _order, _aliases in (
    (
        Order.ABCD,
        "ABCD 1234 BIGENDIAN BIG BE HIGHWORDFIRST HIGHFIRST MSWFIRST HILO HL NORMAL 高字在前",
    ),
    (
        Order.CDAB,
        "CDAB 3412 LOWWORDFIRST LOWFIRST LSWFIRST LOHI LH WORDSWAP WORDSWAPPED SWAPPED 低字在前",
    ),
    (Order.BADC, "BADC 2143 BYTESWAP BYTESWAPPED"),
    (Order.DCBA, "DCBA 4321 LITTLEENDIAN LITTLE LE"),
):
    for _alias in _aliases.split():
        _ORDER_ALIASES[_alias] = _order


def parse_order(cell: object) -> Order:
    """A word-order cell: ABCD/CDAB/BADC/DCBA, 1234/3412/2143/4321, or words for them."""
    text = folded(cell)
    key = re.sub(r"[\W_]", "", text.upper())
    if key in _ORDER_ALIASES:
        return _ORDER_ALIASES[key]
    raise ValueError(
        f"unknown word order {text!r}{_suggest(key, sorted(_ORDER_ALIASES))}"
        " (ABCD, CDAB, BADC, DCBA; or 1234, 3412, 'low word first', 'big endian'...)"
    )


_TABLE_ALIASES: dict[str, Table] = {}
for _table, _aliases in (
    (
        Table.HOLDING_REGISTER,
        "holding holdingregister holdingregisters hr hreg 4x 4xxxx 保持寄存器",
    ),
    (Table.INPUT_REGISTER, "input inputregister inputregisters ir ireg 3x 3xxxx 输入寄存器"),
    (Table.COIL, "coil coils co 0x 0xxxx 线圈"),
    (
        Table.DISCRETE_INPUT,
        "discrete discreteinput discreteinputs di inputstatus 1x 1xxxx 离散输入 离散量输入",
    ),
):
    for _alias in _aliases.split():
        _TABLE_ALIASES[_alias] = _table
# Function codes that read (1-4) or write (5, 6, 15, 16) each table.
FUNCTION_TABLE: dict[int, Table] = {
    1: Table.COIL,
    2: Table.DISCRETE_INPUT,
    3: Table.HOLDING_REGISTER,
    4: Table.INPUT_REGISTER,
    5: Table.COIL,
    6: Table.HOLDING_REGISTER,
    15: Table.COIL,
    16: Table.HOLDING_REGISTER,
}
_FUNCTION = re.compile(r"(fc|function|func)?(0x)?([0-9a-f]{1,2})(h)?")


def _function_code(key: str, bare: bool) -> Table | None:
    """``fc03``, ``0x03``, ``03h``; a bare ``3`` only under a function-code heading."""
    m = _FUNCTION.fullmatch(key)
    if m is None:
        return None
    prefixed, hex_form, digits, h = m.groups()
    if not (prefixed or hex_form or h or bare or (len(digits) == 2 and digits[0] == "0")):
        return None
    try:
        code = int(digits, 16 if (hex_form or h) else 10)
    except ValueError:
        return None
    return FUNCTION_TABLE.get(code)


def parse_table(cell: object, function_column: bool = False) -> Table:
    """A table cell: a table name, a Modicon prefix (4x) or a function code (FC03).

    Read/write pairs (``03/06``, ``FC03, FC16``) are read by their first code.
    A bare ``3`` or ``4`` under a ``table`` heading is refused: it could be a
    function code or a Modicon prefix, which name different tables.
    """
    text = folded(cell)
    first = re.split(r"[/,;&+、]", text)[0] if text else ""
    key = re.sub(r"[\s_\-()]", "", first.casefold())
    if key in _TABLE_ALIASES:
        return _TABLE_ALIASES[key]
    table = _function_code(key, bare=function_column)
    if table is not None:
        return table
    if key in ("1", "3", "4"):
        raise ValueError(
            f"{text!r} is ambiguous: write a table (coil, discrete_input, input_register,"
            " holding_register), a Modicon prefix (0x, 1x, 3x, 4x) or a function code (fc03)"
        )
    raise ValueError(
        f"unknown table {text!r}{_suggest(key, sorted(_TABLE_ALIASES))} (coil, discrete_input,"
        " input_register, holding_register; 0x, 1x, 3x, 4x; or a function code such as fc03)"
    )


_FRACTION = re.compile(r"(?:([-+]?[0-9.]+(?:e[-+]?[0-9]+)?))?\s*[/÷]\s*([0-9.]+(?:e[-+]?[0-9]+)?)")


def parse_real(cell: object, what: str = "number") -> float:
    """A finite number: a spreadsheet number, ``0,1`` (decimal comma), ``x0.1``, ``1/10``."""
    if isinstance(cell, bool):
        raise ValueError(f"{cell!r} is not a {what}")
    if isinstance(cell, int | float):
        value = float(cell)
    else:
        text = folded(cell).casefold()
        text = re.sub(r"^[x×*]\s*", "", text)
        if re.fullmatch(r"[-+]?[0-9]+,[0-9]+", text):
            text = text.replace(",", ".")
        try:
            if m := _FRACTION.fullmatch(text):
                value = float(m.group(1) or 1) / float(m.group(2))
            else:
                value = float(text)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{text_of(cell)!r} is not a {what}") from None
    if not math.isfinite(value):
        raise ValueError(f"{text_of(cell)!r} is not a finite {what}")
    return value


def parse_whole(cell: object, what: str) -> int:
    """A whole number cell (``2``, ``2.0``)."""
    try:
        value = parse_real(cell, what)
    except ValueError:
        raise ValueError(f"{text_of(cell)!r} is not a whole number ({what})") from None
    if not value.is_integer() or abs(value) > 1e6:
        raise ValueError(f"{text_of(cell)!r} is not a whole number ({what})")
    return int(value)
