"""`gateway profiles import`: vendor register tables (CSV and XLSX) to profile YAML, exactly.

Each table is written the way a vendor manual or an Excel export has it (a
BOM, ``;`` and decimal commas, 1-based numbers, Modicon 3xxxx/4xxxx
references, title rows above the headings, function codes), and the whole
output is compared: the YAML on stdout and every line on stderr. The
workbooks are built here with openpyxl. Every YAML written is loaded back
with the profile loader and must give the same points.
"""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from gateway.cli import main
from gateway.profiles.addresses import Notation
from gateway.profiles.importer import Options, import_table
from gateway.profiles.registry import load_profile_file
from gateway.profiles.schema import ModbusProfile

TUF_CSV = (
    "\ufeffRegister;Number of registers;Variable name;Format;Word order;Scale;Unit;Note\r\n"
    "0001;2;Flow Rate;REAL4;;;m³/h;\r\n"
    "0005;2;Velocity;REAL4;;;m/s;\r\n"
    "0009;2;Positive accumulator;LONG;3412;;m³;integer part\r\n"
    "0072;1;Error code;INTEGER;;;;bits, 0 = OK\r\n"
    "0092;1;Signal Quality;INTEGER;;;;0..99\r\n"
    "0093;1;Upstream strength;INTEGER;;0,1;%;\r\n"
)
TUF_YAML = """\
# Imported by `gateway profiles import` from tuf.csv: 6 points.
# 6 addresses converted from 1-based register numbers (number - 1, e.g. 0001 -> 0).
# Each point's comment names its row in the table (and the number written there).
name: tuf-2000m
kind: flow
vendor: generic (TUF-2000 series)
points:
  - {name: flow_rate, table: holding_register, address: 0, type: float32, order: ABCD, unit: m³/h}  # line 2: 0001
  - {name: velocity, table: holding_register, address: 4, type: float32, order: ABCD, unit: m/s}  # line 3: 0005
  - {name: positive_accumulator, table: holding_register, address: 8, type: int32, order: CDAB, unit: m³, description: integer part}  # line 4: 0009
  - {name: error_code, table: holding_register, address: 71, type: int16, description: 'bits, 0 = OK'}  # line 5: 0072
  - {name: signal_quality, table: holding_register, address: 91, type: int16, description: 0..99}  # line 6: 0092
  - {name: upstream_strength, table: holding_register, address: 92, type: int16, scale: 0.1, unit: '%'}  # line 7: 0093
"""  # noqa: E501
TUF_STDERR = """\
columns of tuf.csv (headings on line 1):
  column 1 'Register'             -> address
  column 2 'Number of registers'  -> length
  column 3 'Variable name'        -> name
  column 4 'Format'               -> type
  column 5 'Word order'           -> order
  column 6 'Scale'                -> scale
  column 7 'Unit'                 -> unit
  column 8 'Note'                 -> description
note: 6 addresses converted from 1-based register numbers (number - 1, e.g. 0001 -> 0)
note: no table column: every point is read from a holding_register (--table)
note: 2 multi-register points without a word order: ABCD (high word first) assumed; --word-order to choose, `gateway probe --orders` to check
note: 6 names changed to point names (letters, digits and _; where that loses something, the description keeps the table's name):
  line 2: 'Flow Rate' -> flow_rate
  line 3: 'Velocity' -> velocity
  line 4: 'Positive accumulator' -> positive_accumulator
  line 5: 'Error code' -> error_code
  line 6: 'Signal Quality' -> signal_quality
  line 7: 'Upstream strength' -> upstream_strength
wrote tuf.yaml: profile 'tuf-2000m', 6 points
"""  # noqa: E501

HEAT_CSV = (
    "Name,Address,Type,Byte order,Scale,Unit,Description\n"
    "Supply temperature,30001,int16,,0.01,°C,\n"
    "Return temperature,30002,int16,,0.01,°C,\n"
    "Flow,30003,float32,CDAB,,m³/h,Volume flow\n"
    "Heat energy,30005,uint32,CDAB,,kWh,Totaliser\n"
    "Heat power,30007,float,,,kW,\n"
    "Set point,40001,int16,,0.1,°C,Supply set point\n"
)
HEAT_YAML = """\
# Imported by `gateway profiles import` from heat.csv: 6 points.
# 5 addresses in 3xxxx notation converted to input_register addresses from 0 (number - 30001, e.g. 30001 -> 0).
# 1 address in 4xxxx notation converted to holding_register addresses from 0 (number - 40001, e.g. 40001 -> 0).
# Each point's comment names its row in the table (and the number written there).
name: heat
kind: heat_meter
points:
  - {name: supply_temperature, table: input_register, address: 0, type: int16, scale: 0.01, unit: °C}  # line 2: 30001
  - {name: return_temperature, table: input_register, address: 1, type: int16, scale: 0.01, unit: °C}  # line 3: 30002
  - {name: flow, table: input_register, address: 2, type: float32, order: CDAB, unit: m³/h, description: Volume flow}  # line 4: 30003
  - {name: heat_energy, table: input_register, address: 4, type: uint32, order: CDAB, unit: kWh, description: Totaliser}  # line 5: 30005
  - {name: heat_power, table: input_register, address: 6, type: float32, order: CDAB, unit: kW}  # line 6: 30007
  - {name: set_point, table: holding_register, address: 0, type: int16, scale: 0.1, unit: °C, description: Supply set point}  # line 7: 40001
"""  # noqa: E501
HEAT_STDERR = """\
columns of heat.csv (headings on line 1):
  column 1 'Name'         -> name
  column 2 'Address'      -> address
  column 3 'Type'         -> type
  column 4 'Byte order'   -> order
  column 5 'Scale'        -> scale
  column 6 'Unit'         -> unit
  column 7 'Description'  -> description
note: 5 addresses in 3xxxx notation converted to input_register addresses from 0 (number - 30001, e.g. 30001 -> 0)
note: 1 address in 4xxxx notation converted to holding_register addresses from 0 (number - 40001, e.g. 40001 -> 0)
note: 6 names changed to point names (letters, digits and _; where that loses something, the description keeps the table's name):
  line 2: 'Supply temperature' -> supply_temperature
  line 3: 'Return temperature' -> return_temperature
  line 4: 'Flow' -> flow
  line 5: 'Heat energy' -> heat_energy
  line 6: 'Heat power' -> heat_power
  line 7: 'Set point' -> set_point
profile 'heat': 6 points
"""  # noqa: E501

BAD_CSV = (
    "Name,Register,Type,Scale,Unit\n"
    "Supply temperature,40001,int16,0.1,°C\n"
    "Return temperature,40002,int16,0.1,°C\n"
    "Pressure,40003,flaot,,MPa\n"
    "Water level,40003,uint16,,mm\n"
    "Flow,40004,float32,,m³/h\n"
    "Energy,40005,uint32,,kWh\n"
)
BAD_CSV_STDERR = """\
error: bad.csv:4: column 3 'Type': unknown type 'flaot'; did you mean 'float'? (types: bool, int16, uint16, int32, uint32, int64, uint64, float32, float64, string, bit; also names such as float, real, word, dword, long, double)
error: bad.csv:5: column 2 'Register': duplicate address: holding_register 2 is already 'pressure' (line 4)
error: bad.csv:7: column 2 'Register': holding_register 4..5 (uint32) overlaps 'flow' at 3..4 (float32, line 6)
"""  # noqa: E501

ARCM_YAML = """\
# Imported by `gateway profiles import` from arcm.xlsx, sheet 'Modbus map': 6 points.
# 3 addresses in 3xxxx notation converted to input_register addresses from 0 (number - 30001, e.g. 30001 -> 0).
# 1 address in 4xxxx notation converted to holding_register addresses from 0 (number - 40001, e.g. 40101 -> 100).
# 1 address in 1xxxx notation converted to discrete_input addresses from 0 (number - 10001, e.g. 10001 -> 0).
# 1 address in 0xxxx notation converted to coil addresses from 0 (number - 00001, e.g. 1 -> 0).
# Each point's comment names its row in the table (and the number written there).
name: arcm
kind: leakage
vendor: Acrel
model: ARCM300
max_gap: 8
points:
  - {name: leakage_current, table: input_register, address: 0, type: uint16, unit: mA}  # 'Modbus map'!4: 30001
  - {name: temperature_1, table: input_register, address: 1, type: int16, scale: 0.1, unit: °C}  # 'Modbus map'!5: 30002
  - {name: energy, table: input_register, address: 10, type: uint32, order: CDAB, scale: 0.01, unit: kWh}  # 'Modbus map'!6: 30011
  - {name: alarm_threshold, table: holding_register, address: 100, type: uint16, unit: mA}  # 'Modbus map'!7: 40101
  - {name: alarm, table: discrete_input, address: 0, type: bool}  # 'Modbus map'!8: 10001
  - {name: relay_1, table: coil, address: 0, type: bool}  # 'Modbus map'!9: 1
"""  # noqa: E501
ARCM_STDERR = """\
note: read sheet 'Modbus map' of 2 (Modbus map, Revisions); --sheet to choose
columns of arcm.xlsx, sheet 'Modbus map' (headings on 'Modbus map'!3):
  column A 'No.'            ignored
  column B 'Parameter'      -> name
  column C 'Address'        -> address
  column D 'Function code'  -> function code
  column E 'Data type'      -> type
  column F 'Multiplier'     -> scale
  column G 'Unit'           -> unit
  column H 'R/W'            ignored
note: 3 addresses in 3xxxx notation converted to input_register addresses from 0 (number - 30001, e.g. 30001 -> 0)
note: 1 address in 4xxxx notation converted to holding_register addresses from 0 (number - 40001, e.g. 40101 -> 100)
note: 1 address in 1xxxx notation converted to discrete_input addresses from 0 (number - 10001, e.g. 10001 -> 0)
note: 1 address in 0xxxx notation converted to coil addresses from 0 (number - 00001, e.g. 1 -> 0)
note: 6 names changed to point names (letters, digits and _; where that loses something, the description keeps the table's name):
  'Modbus map'!4: 'Leakage current' -> leakage_current
  'Modbus map'!5: 'Temperature 1' -> temperature_1
  'Modbus map'!6: 'Energy' -> energy
  'Modbus map'!7: 'Alarm threshold' -> alarm_threshold
  'Modbus map'!8: 'Alarm' -> alarm
  'Modbus map'!9: 'Relay 1' -> relay_1
profile 'arcm': 6 points
"""  # noqa: E501
BAD_XLSX_STDERR = """\
error: bad.xlsx:Registers!3: column B 'Address': duplicate address: input_register 0 is already 'leakage' (Registers!2)
error: bad.xlsx:Registers!4: column C 'Type': unknown type 'unit16'; did you mean 'uint16'? (types: bool, int16, uint16, int32, uint32, int64, uint64, float32, float64, string, bit; also names such as float, real, word, dword, long, double)
"""  # noqa: E501


def write_arcm(path: Path) -> None:
    """An Acrel-style map as a vendor workbook: a title, a blank row, then the headings."""
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Modbus map"
    ws.append(["ARCM300 residual current monitor: register map"])
    ws.append([])
    ws.append(["No.", "Parameter", "Address", "Function code", "Data type", "Multiplier",
               "Unit", "R/W"])  # fmt: skip
    ws.append([1, "Leakage current", 30001, "04", "UINT16", 1, "mA", "R"])
    ws.append([2, "Temperature 1", 30002, "04", "INT16", 0.1, "°C", "R"])
    ws.append([3, "Energy", 30011, "04", "UINT32 CDAB", 0.01, "kWh", "R"])
    ws.append([4, "Alarm threshold", 40101, "03/06", "UINT16", 1, "mA", "R/W"])
    ws.append([5, "Alarm", 10001, "02", "bit", None, None, "R"])
    # Excel keeps 00001 as the number 1: a coil reference whose zeros were dropped.
    ws.append([6, "Relay 1", 1, "01/05", "bool", None, None, "R/W"])
    wb.create_sheet("Revisions")
    wb.save(path)


def write_bad_xlsx(path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Registers"
    ws.append(["Name", "Address", "Type", "Unit"])
    ws.append(["Leakage", 30001, "uint16", "mA"])
    ws.append(["Leakage alarm", 30001, "uint16", None])
    ws.append(["Threshold", 40001, "unit16", "mA"])
    wb.save(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["profiles", "import", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_round_trip(path: Path, text: str) -> ModbusProfile:
    """The YAML loads with the profile loader, and to the points the importer made."""
    path.write_text(text, encoding="utf-8")
    loaded = load_profile_file(path)
    assert isinstance(loaded, ModbusProfile)
    return loaded


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # messages name files as given: relative here
    return tmp_path


def test_one_based_csv_with_bom_semicolons_and_decimal_commas(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "tuf.csv").write_text(TUF_CSV, encoding="utf-8", newline="")
    code, out, err = run(
        capsys, "tuf.csv", "--one-based", "--kind", "flow", "--name", "tuf-2000m",
        "--vendor", "generic (TUF-2000 series)", "-o", "tuf.yaml",
    )  # fmt: skip
    assert (code, out, err) == (0, "", TUF_STDERR)
    assert (here / "tuf.yaml").read_text(encoding="utf-8") == TUF_YAML
    loaded = load_profile_file(here / "tuf.yaml")
    imported = import_table(
        here / "tuf.csv",
        Options(
            name="tuf-2000m",
            kind="flow",
            vendor="generic (TUF-2000 series)",
            notation=Notation.ONE_BASED,
        ),
    )
    assert loaded == imported.profile


def test_modicon_3xxxx_and_4xxxx_csv(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (here / "heat.csv").write_text(HEAT_CSV, encoding="utf-8")
    code, out, err = run(capsys, "heat.csv", "--kind", "heat_meter", "--word-order", "CDAB")
    assert (code, out, err) == (0, HEAT_YAML, HEAT_STDERR)
    loaded = assert_round_trip(here / "heat.yaml", out)
    assert [(p.name, p.table, p.address) for p in loaded.points][-1] == (
        "set_point", "holding_register", 0,
    )  # fmt: skip


def test_wrong_type_and_duplicate_address_csv_write_nothing(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "bad.csv").write_text(BAD_CSV, encoding="utf-8")
    code, out, err = run(capsys, "bad.csv", "-o", "bad.yaml")
    assert (code, out, err) == (2, "", BAD_CSV_STDERR)
    assert not (here / "bad.yaml").exists()
    assert sorted(p.name for p in here.iterdir()) == ["bad.csv"]  # no temporary file left


def test_vendor_workbook_with_title_rows_function_codes_and_two_sheets(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_arcm(here / "arcm.xlsx")
    code, out, err = run(
        capsys, "arcm.xlsx", "--kind", "leakage", "--vendor", "Acrel", "--model", "ARCM300",
        "--max-gap", "8",
    )  # fmt: skip
    assert (code, out, err) == (0, ARCM_YAML, ARCM_STDERR)
    assert_round_trip(here / "arcm.yaml", out)


def test_wrong_type_and_duplicate_address_xlsx_name_sheet_and_row(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_bad_xlsx(here / "bad.xlsx")
    code, out, err = run(capsys, "bad.xlsx", "-o", "bad.yaml")
    assert (code, out, err) == (2, "", BAD_XLSX_STDERR)
    assert not (here / "bad.yaml").exists()


@pytest.mark.parametrize(
    ("table", "options", "expected"),
    [
        pytest.param(
            "Name,Type,Unit\nFlow,float,m3/h\n",
            [],
            ["t.csv:1: no address column among the headings (column 1 'Name' as name, column 2"
             " 'Type' as type, column 3 'Unit' as unit); head it 'address' or 'addr' or"
             " 'register'"],
            id="missing-address-column",
        ),
        pytest.param(
            "Parameter list\nFlow,40001\n",
            [],
            ["t.csv: no heading row in the first 30 rows: a register table needs at least a name"
             " column (name, point, tag, parameter) and an address column (address, register)"],
            id="no-heading-row",
        ),
        pytest.param(
            "Name,Address,Register\nA,0,1\n",
            [],
            ["t.csv:1: column 2 'Address' and column 3 'Register' are both read as address;"
             " rename or delete one"],
            id="two-address-columns",
        ),
        pytest.param(
            "Name,Address\nA,0\n,\nB,1\n\n\n",
            [],
            ["t.csv:3: empty row inside the table (delete it; the table ends at its last row)"],
            id="empty-row",
        ),
        pytest.param("Name,Address\n", [], ["t.csv:1: no rows under the headings"], id="no-rows"),
        pytest.param(
            "Name,Address\nA,forty\nB,\nC,-3\n",
            [],
            ["t.csv:2: column 2 'Address': 'forty' is not a register number (write it as 40001,"
             " 0x9C41 or 9C41h)",
             "t.csv:3: column 2 'Address': no address (a section heading? delete the row)",
             "t.csv:4: column 2 'Address': '-3' is not a register number (write it as 40001,"
             " 0x9C41 or 9C41h)"],
            id="non-numeric-address",
        ),
        pytest.param(
            "Name,Address\nFlow rate,0\nFlow-Rate,1\nFlow rate,2\n",
            [],
            ["t.csv:3: column 1 'Name': 'Flow-Rate' becomes flow_rate, the point name of line 2"
             " ('Flow rate'): rename one",
             "t.csv:4: column 1 'Name': duplicate name: 'Flow rate' is already used on line 2"],
            id="duplicate-names",
        ),
        pytest.param(
            "Name,Address,Type,Bit\nA,0,bit,0\nB,0,bit,0\nC,0,uint16,\n",
            [],
            ["t.csv:3: column 4 'Bit': duplicate address: bit 0 of holding_register 0 is already"
             " 'a' (line 2)"],
            id="duplicate-bit",
        ),
        pytest.param(
            "Name,Address,Table\nA,0,4\n",
            [],
            ["t.csv:2: column 3 'Table': '4' is ambiguous: write a table (coil, discrete_input,"
             " input_register, holding_register), a Modicon prefix (0x, 1x, 3x, 4x) or a function"
             " code (fc03)"],
            id="ambiguous-table",
        ),
        pytest.param(
            "Name,Address,Type\nSerial,0,string\n",
            [],
            ["t.csv:2: column 3 'Type': type string needs its registers in a length column"],
            id="string-without-length",
        ),
        pytest.param(
            "Name,Address,Type,Registers\nFlow,0,float32,1\n",
            [],
            ["t.csv:2: column 4 'Registers': type float32 takes 2 registers, not 1"],
            id="length-contradicts-type",
        ),
        pytest.param(
            "Name,Address,Type\nAlarm,0,bool\n",
            [],
            ["t.csv:2: column 3 'Type': type 'bool' in a holding_register: name the bit (0..15) in"
             " a bit column, or read it from a coil or discrete_input"],
            id="bool-in-a-register",
        ),
        pytest.param(
            "Name,Address,Type,Table\nA,0,float,coil\n",
            [],
            ["t.csv:2: column 3 'Type': a coil holds one bit: type bool, not 'float'"],
            id="float-coil",
        ),
        pytest.param(
            "Name,Address,Type,Order\nA,0,float CDAB,ABCD\n",
            [],
            ["t.csv:2: column 4 'Order': ABCD contradicts CDAB in the type column"],
            id="two-word-orders",
        ),
        pytest.param(
            "Name,Address,Scale\nA,0,abc\nB,1,0\n",
            [],
            ["t.csv:2: column 3 'Scale': 'abc' is not a scale",
             "t.csv:3: column 3 'Scale': a scale of 0 makes every value 0"],
            id="bad-scale",
        ),
        pytest.param(
            "Name,Address,Type\nA,65535,float32\n",
            [],
            ["t.csv:2: column 2 'Address': a float32 here would run past address 65535"],
            id="past-the-last-register",
        ),
        pytest.param(
            "Name,Address\nA,0\n",
            ["--one-based"],
            ["t.csv:2: column 2 'Address': address 0 in a table of 1-based register numbers"
             " (--one-based)"],
            id="zero-in-one-based-table",
        ),
        pytest.param(
            "Name,Address\nA,0\n",
            ["--name", "My Meter"],
            ["--name 'My Meter': must match ^[a-z0-9][a-z0-9_.-]*$"],
            id="bad-profile-name",
        ),
    ],
)  # fmt: skip
def test_bad_tables_are_refused_with_file_line_and_column(
    here: Path,
    capsys: pytest.CaptureFixture[str],
    table: str,
    options: list[str],
    expected: list[str],
) -> None:
    (here / "t.csv").write_text(table, encoding="utf-8")
    code, out, err = run(capsys, "t.csv", "-o", "t.yaml", *options)
    assert (code, out) == (2, "")
    assert err.splitlines() == [f"error: {line}" for line in expected]
    assert not (here / "t.yaml").exists()


def test_a_table_in_another_encoding_is_named_and_read_with_encoding(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Excel on a Chinese Windows saves "CSV" in GBK.
    (here / "gbk.csv").write_bytes("名称,地址,类型,单位\n瞬时流量,0,浮点,m³/h\n".encode("gb18030"))
    code, out, err = run(capsys, "gbk.csv")
    assert (code, out) == (2, "")
    assert err == (
        "error: gbk.csv:1: not utf-8 text (byte 0xc3): save it as 'CSV UTF-8' or name its"
        " encoding, e.g. --encoding gbk\n"
    )
    code, out, err = run(capsys, "gbk.csv", "--encoding", "gb18030", "--kind", "flow")
    assert code == 0, err
    assert out.splitlines()[-1] == (
        "  - {name: hr_0, table: holding_register, address: 0, type: float32, order: ABCD,"
        " unit: m³/h, description: 瞬时流量}  # line 2"
    )
    assert "  line 2: '瞬时流量' -> hr_0" in err.splitlines()


def test_a_mixed_table_is_read_as_written_with_a_warning(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "t.csv").write_text("Name,Address\nA,40001\nB,12\n", encoding="utf-8")
    code, out, err = run(capsys, "t.csv")
    assert code == 0
    assert [ln.split("#")[0].strip() for ln in out.splitlines() if ln.startswith("  - ")] == [
        "- {name: a, table: holding_register, address: 40001, type: uint16}",
        "- {name: b, table: holding_register, address: 12, type: uint16}",
    ]
    assert (
        "warning: line 2: 40001 looks like a Modicon reference, but line 3: 12 does not fit that"
        " notation (or its table): every address is read as written (--modicon or --one-based to"
        " convert them)"
    ) in err.splitlines()


VIGIREX_CSV = (
    "sep=;\n"
    "Parameter;Address (hex);Type;Unit;Comment\n"
    "Earth leakage current;0190;UINT16;mA;\n"
    "Alarm;00C9;UINT16;;1 = alarm\n"
    "Pre-alarm;00CB;UINT16;;1 = pre-alarm\n"
    "Alarm threshold;01F5;UINT16;mA;\n"
)
VIGIREX_YAML = """\
# Imported by `gateway profiles import` from vigirex.csv: 4 points.
# 4 addresses read as hexadecimal (e.g. 0190 -> 400).
# Each point's comment names its row in the table (and the number written there).
name: vigirex
kind: leakage
vendor: Schneider
model: Vigirex RHU
points:
  - {name: earth_leakage_current, table: holding_register, address: 400, type: uint16, unit: mA}  # line 3: 0190
  - {name: alarm, table: holding_register, address: 201, type: uint16, description: 1 = alarm}  # line 4: 00C9
  - {name: pre_alarm, table: holding_register, address: 203, type: uint16, description: 1 = pre-alarm}  # line 5: 00CB
  - {name: alarm_threshold, table: holding_register, address: 501, type: uint16, unit: mA}  # line 6: 01F5
"""  # noqa: E501


def test_hex_addresses_under_a_hex_heading_and_excels_sep_line(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "vigirex.csv").write_text(VIGIREX_CSV, encoding="utf-8")
    code, out, err = run(
        capsys, "vigirex.csv", "--kind", "leakage", "--vendor", "Schneider",
        "--model", "Vigirex RHU", "--table", "holding",
    )  # fmt: skip
    assert (code, out) == (0, VIGIREX_YAML), err
    assert err.splitlines()[:3] == [
        "columns of vigirex.csv (headings on line 2):",
        "  column 1 'Parameter'      -> name",
        "  column 2 'Address (hex)'  -> address (hex)",
    ]
    assert "note: 4 addresses read as hexadecimal (e.g. 0190 -> 400)" in err.splitlines()
    assert_round_trip(here / "vigirex.yaml", out)


def test_a_section_heading_row_is_named_as_such(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "t.csv").write_text("Name,Address,Type\nMeasurements,,\nFlow,0,uint16\n")
    assert run(capsys, "t.csv") == (
        2,
        "",
        "error: t.csv:2: column 2 'Address': no address (a section heading? delete the row)\n",
    )


def test_rows_past_the_limit_end_the_table_when_blank_and_are_refused_otherwise(
    here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.profiles.table_file.MAX_ROWS", 3)
    (here / "t.csv").write_text("Name,Address\nA,0\nB,1\n" + ",\n" * 50)
    code, out, _ = run(capsys, "t.csv")
    assert code == 0 and "name: b" in out.replace("{", "")
    (here / "t.csv").write_text("Name,Address\nA,0\nB,1\nC,2\n")
    assert run(capsys, "t.csv") == (2, "", "error: t.csv:4: more than 3 rows\n")
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    for row in (["Name", "Address"], ["A", 0], ["B", 1]):
        ws.append(row)
    ws["A900"] = ""  # a formatted, empty cell far below: the reading stops at the limit
    wb.save(here / "t.xlsx")
    code, out, _ = run(capsys, "t.xlsx")
    assert code == 0 and "name: b" in out.replace("{", "")
    ws["A4"], ws["B4"] = "C", 2
    wb.save(here / "t.xlsx")
    assert run(capsys, "t.xlsx") == (2, "", "error: t.xlsx:Sheet!4: more than 3 rows\n")


def test_an_output_that_cannot_be_written_is_one_error(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "heat.csv").write_text(HEAT_CSV, encoding="utf-8")
    assert run(capsys, "heat.csv", "-o", "missing/heat.yaml") == (
        2,
        "",
        "error: missing/heat.yaml: cannot write: No such file or directory\n",
    )


MISC_CSV = (
    "Name,Register,Type,Registers,Bit,Divisor,Value offset,Decimals,Unit,FC\n"
    "Model,0,string,8,,,,,,3\n"
    "Status run,8,bit,,0,,,,,3\n"
    "Status fault,8,bit,,1,,,,,3\n"
    "Status word,8,uint16,1,,,,,,3\n"
    "Temperature,9,int16,1,,10,-40,1,°C,4\n"
    "Counter,10,uint64,4,,,,,,4\n"
)


def test_strings_bits_divisors_offsets_and_decimals(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "misc.csv").write_text(MISC_CSV, encoding="utf-8")
    code, out, err = run(capsys, "misc.csv", "--kind", "boiler", "--word-order", "CDAB")
    assert code == 0, err
    assert [ln.split("  #")[0] for ln in out.splitlines() if ln.startswith("  - ")] == [
        "  - {name: model, table: holding_register, address: 0, type: string, length: 8}",
        "  - {name: status_run, table: holding_register, address: 8, type: bit, bit: 0}",
        "  - {name: status_fault, table: holding_register, address: 8, type: bit, bit: 1}",
        "  - {name: status_word, table: holding_register, address: 8, type: uint16}",
        "  - {name: temperature, table: input_register, address: 9, type: int16, scale: 0.1,"
        " offset: -40.0, decimals: 1, unit: °C}",
        "  - {name: counter, table: input_register, address: 10, type: uint64, order: CDAB}",
    ]
    assert_round_trip(here / "misc.yaml", out)
