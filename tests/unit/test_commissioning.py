"""Pure parts of ``gateway probe`` and ``gateway scan``, as tables: option parsing, word orders,
table rendering, unit verdicts, the probe and scan output for known results, progress."""

from __future__ import annotations

import asyncio
import io

import pytest

from gateway.commissioning.link import (
    default_rtu_timeout,
    parse_bauds,
    parse_hostport,
    parse_parities,
    parse_timeout,
    rtu_config,
    tcp_config,
)
from gateway.commissioning.probe import (
    NOT_SENT,
    PointRow,
    ProbeResult,
    ProbeTarget,
    RequestResult,
    all_orders,
    format_value,
    render_text,
    to_json,
)
from gateway.commissioning.scan import (
    Progress,
    ScanReport,
    UnitResult,
    announce,
    bound_s,
    parse_units,
)
from gateway.commissioning.scan import render_text as render_scan
from gateway.commissioning.table import render
from gateway.errors import CommandError
from gateway.model import Quality
from gateway.profiles.schema import DataType, ModbusPoint, ModbusProfile
from gateway.sources.planner import plan_profile

UNITS_OK = [
    ("1", [1]),
    ("1-3", [1, 2, 3]),
    ("1-3,31", [1, 2, 3, 31]),
    (" 7 , 2 ", [2, 7]),
    ("5,5,4-6", [4, 5, 6]),
    ("247", [247]),
    ("1-247", list(range(1, 248))),
]
UNITS_BAD = [
    ("", "'' is not a unit id"),
    ("0", "unit ids are 1..247"),
    ("1-248", "unit ids are 1..247"),
    ("20-1", "runs backwards"),
    ("1-x", "'1-x' is not a unit id"),
    ("1,,2", "'' is not a unit id"),
    ("-3", "'-3' is not a unit id"),
]


@pytest.mark.parametrize(("text", "units"), UNITS_OK)
def test_unit_ranges(text: str, units: list[int]) -> None:
    assert parse_units(text) == units


@pytest.mark.parametrize(("text", "why"), UNITS_BAD)
def test_bad_unit_ranges_name_the_option_and_the_part(text: str, why: str) -> None:
    with pytest.raises(CommandError) as err:
        parse_units(text)
    assert str(err.value).startswith(f"--units {text!r}: ")
    assert why in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.5:502", ("10.0.0.5", 502)),
        ("plc.local:1502", ("plc.local", 1502)),
        ("10.0.0.5", ("10.0.0.5", 502)),
        ("[::1]:5020", ("::1", 5020)),
    ],
)
def test_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text) == expected


@pytest.mark.parametrize("text", ["host:x", ":502", "host:0", "host:70000"])
def test_bad_host_and_port(text: str) -> None:
    with pytest.raises(CommandError, match=r"^--tcp "):
        parse_hostport(text)


@pytest.mark.parametrize(
    ("bauds", "parities", "expected"),
    [
        ("9600", "N", ([9600], ["N"])),
        ("9600,19200", "n,e", ([9600, 19200], ["N", "E"])),
        ("2400,2400", "O", ([2400], ["O"])),
    ],
)
def test_line_setting_lists(
    bauds: str, parities: str, expected: tuple[list[int], list[str]]
) -> None:
    assert (parse_bauds(bauds), parse_parities(parities)) == expected


@pytest.mark.parametrize(
    ("func", "text", "message"),
    [
        (parse_bauds, "9601", "--baud '9601': '9601' is not one of 1200, 2400"),
        (parse_bauds, "9600,", "--baud '9600,': an empty item"),
        (parse_parities, "N,X", "--parity 'N,X': 'X' is not one of N, E, O"),
        (parse_timeout, "0.01", "--timeout '0.01': between 0.05 and 60 s"),
        (parse_timeout, "soon", "--timeout 'soon': not a number"),
    ],
)
def test_bad_line_settings(func: object, text: str, message: str) -> None:
    with pytest.raises(CommandError) as err:
        func(text)  # type: ignore[operator]
    assert str(err.value).startswith(message)


def test_default_timeouts_grow_at_low_baud_rates() -> None:
    assert [default_rtu_timeout(b) for b in (115200, 9600, 2400)] == [0.3, 0.3, 1.2]
    assert rtu_config("/dev/x", 2400, "E", 1, None, "t").timeout_s == 1.2
    assert tcp_config("h", 502, None, "t").timeout_s == 1.0
    assert tcp_config("h", 502, 0.2, "t").timeout_s == 0.2


def pt(dtype: str, **kw: object) -> ModbusPoint:
    return ModbusPoint.model_validate(
        {"name": "x", "table": "holding_register", "address": 0, "type": dtype, **kw}
    )


# (point, words, value in ABCD, CDAB, BADC, DCBA)
ORDERS: list[tuple[ModbusPoint, list[int], tuple[str, str, str, str]]] = [
    (pt("uint32"), [0x0001, 0x0002], ("65538", "131073", "16777728", "33554688")),
    (pt("uint32", order="CDAB"), [0x0001, 0x0002], ("65538", "131073", "16777728", "33554688")),
    (pt("int32"), [0xFFFF, 0xFFFE], ("-2", "-65537", "-257", "-16777217")),
    (pt("float32"), [0x4148, 0x0000], ("12.5", "2.34185e-41", "197632", "2.591982e-41")),
    # NaN is no reading: that order is invalid, the others still show.
    (pt("float32"), [0x7FC0, 0x0000], ("invalid", "4.582806e-41", "-3.984375", "6.905459e-41")),
    (pt("uint32", scale=0.1), [0x0001, 0x0002], ("6553.8", "13107.3", "1677772.8", "3355468.8")),
    (pt("int64"), [0, 0, 0, 1], ("1", "281474976710656", "256", "72057594037927936")),
    (pt("string", length=2), [0x4142, 0x4344], ("ABCD", "CDAB", "BADC", "DCBA")),
]


@pytest.mark.parametrize(("point", "words", "values"), ORDERS)
def test_every_multi_register_value_in_all_four_orders(
    point: ModbusPoint, words: list[int], values: tuple[str, str, str, str]
) -> None:
    orders = ("ABCD", "CDAB", "BADC", "DCBA")
    assert all_orders(point, words) == dict(zip(orders, values, strict=True))


@pytest.mark.parametrize("point", [pt("uint16"), pt("int16"), pt("bit", bit=3)])
def test_one_register_points_have_no_orders_to_choose(point: ModbusPoint) -> None:
    assert all_orders(point, [0x1234]) == {}


@pytest.mark.parametrize(
    ("value", "dtype", "text"),
    [
        (None, None, "-"),
        (True, None, "true"),
        (False, None, "false"),
        (120.00000762939453, DataType.FLOAT32, "120"),
        (21.5, DataType.INT16, "21.5"),
        (1677772.8, DataType.UINT32, "1677772.8"),
        (7, DataType.UINT16, "7"),
        ("TUF-2000", DataType.STRING, "TUF-2000"),
    ],
)
def test_values_as_shown(value: object, dtype: DataType | None, text: str) -> None:
    assert format_value(value, dtype) == text  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("headers", "rows", "right", "lines"),
    [
        (["a", "bb"], [], (), ["a  bb"]),
        (["a", "bb"], [["xyz", "1"]], (), ["a    bb", "xyz  1"]),
        (["n", "v"], [["1", "x"], ["100", "yy"]], {0}, ["  n  v", "  1  x", "100  yy"]),
        # Missing cells are empty; no trailing spaces.
        (["a", "b", "c"], [["1"]], (), ["a  b  c", "1"]),
    ],
)
def test_tables(
    headers: list[str], rows: list[list[str]], right: set[int], lines: list[str]
) -> None:
    assert render(headers, rows, right) == lines


def test_a_row_with_too_many_cells_is_refused() -> None:
    with pytest.raises(ValueError, match="3 cells for 2 columns"):
        render(["a", "b"], [["1", "2", "3"]])


FC = {3: "ok", 4: "not tried", 1: "not tried", 2: "not tried"}


@pytest.mark.parametrize(
    ("functions", "alive", "status"),
    [
        ({3: "ok", 4: "exception 2", 1: "ok", 2: "exception 1"}, True, "answers"),
        ({3: "exception 2", 4: "exception 2", 1: "exception 2", 2: "exception 2"}, True,
         "answers (exception 2)"),
        ({3: "exception 1", 4: "ok", 1: "not tried", 2: "not tried"}, True, "answers"),
        ({3: "no answer", 4: "not tried", 1: "not tried", 2: "not tried"}, False, "no answer"),
        ({3: "garbled", 4: "not tried", 1: "not tried", 2: "not tried"}, False, "garbled answer"),
        # A TCP gateway saying the unit behind it did not answer: nobody there.
        ({3: "exception 11", 4: "not tried", 1: "not tried", 2: "not tried"}, False,
         "no unit (gateway: exception 11)"),
        ({3: "exception 10", 4: "not tried", 1: "not tried", 2: "not tried"}, False,
         "no unit (gateway: exception 10)"),
    ],
)  # fmt: skip
def test_what_proves_a_unit_alive(functions: dict[int, str], alive: bool, status: str) -> None:
    res = UnitResult(5, "9600 8N1", functions)
    assert (res.alive, res.status) == (alive, status)


PROFILE = ModbusProfile.model_validate(
    {
        "name": "meter",
        "kind": "flow",
        "points": [
            {"name": "flow", "table": "holding_register", "address": 0, "type": "float32",
             "unit": "m3/h"},
            {"name": "total", "table": "holding_register", "address": 2, "type": "uint32",
             "order": "CDAB", "unit": "m3"},
            {"name": "status", "table": "input_register", "address": 10},
        ],
    }
)  # fmt: skip
LINK = tcp_config("10.0.0.5", 502, 0.5, "probe")


def known_result() -> ProbeResult:
    """A read whose holding registers answered and whose input register timed out."""
    holding, inputs = sorted(plan_profile(PROFILE), key=lambda r: r.table != "holding_register")
    flow, total, status = PROFILE.points
    timeout = "unit 3: no answer within 0.5 s"
    return ProbeResult(
        ProbeTarget("meter-1", LINK, 3, PROFILE),
        1_700_000_000_000_000_000,
        [
            RequestResult(holding, 0.0123, [0x42F7, 0x0000, 0x1170, 0x0001]),
            RequestResult(inputs, 0.5004, None, timeout),
        ],
        [
            PointRow(flow, ["42F7", "0000"], 123.5, Quality.GOOD, "",
                     all_orders(flow, [0x42F7, 0x0000])),
            PointRow(total, ["1170", "0001"], 70000, Quality.GOOD, "",
                     all_orders(total, [0x1170, 0x0001])),
            PointRow(status, [], None, Quality.BAD, timeout),
        ],
        ["(an advice line)"],
    )  # fmt: skip


def test_probe_table() -> None:
    assert render_text(known_result()) == [
        "probe meter-1: unit 3 on tcp 10.0.0.5:502, profile meter (3 points in 2 request(s))",
        "",
        "point   table             addr  raw        value  unit  quality  reason",
        "flow    holding_register     0  42F7 0000  123.5  m3/h  good",
        "total   holding_register     2  1170 0001  70000  m3    good",
        "status  input_register      10  -          -            bad      unit 3: no answer within 0.5 s",  # noqa: E501
        "",
        "request           start  count       rtt  result",
        "holding_register      0      4   12.3 ms  ok",
        "input_register       10      1  500.4 ms  unit 3: no answer within 0.5 s",
        "",
        "advice:",
        "  (an advice line)",
    ]  # fmt: skip


def test_probe_table_with_orders_marks_the_profiles_order() -> None:
    lines = render_text(known_result(), orders=True)
    assert lines[2:6] == [
        "point   table             addr  raw        value  unit  quality  ABCD       CDAB          BADC           DCBA          reason",  # noqa: E501
        "flow    holding_register     0  42F7 0000  123.5  m3/h  good     123.5*     2.402246e-41  -3.934787e+33  8.869939e-41",  # noqa: E501
        "total   holding_register     2  1170 0001  70000  m3    good     292552705  70000*        1880162560     16805905",  # noqa: E501
        "status  input_register      10  -          -            bad                                                            unit 3: no answer within 0.5 s",  # noqa: E501
    ]  # fmt: skip
    assert lines[6] == "(* the profile's order; one-register points have none to choose)"


def test_probe_json() -> None:
    doc = to_json(known_result())
    assert {k: doc[k] for k in ("device", "unit", "link", "profile", "answered", "advice")} == {
        "device": "meter-1",
        "unit": 3,
        "link": "tcp 10.0.0.5:502",
        "profile": "meter",
        "answered": True,
        "advice": ["(an advice line)"],
    }
    assert doc["points"][1] == {
        "name": "total",
        "table": "holding_register",
        "address": 2,
        "raw": ["1170", "0001"],
        "value": 70000,
        "unit": "m3",
        "quality": "good",
        "reason": None,
        "orders": {"ABCD": "292552705", "CDAB": "70000", "BADC": "1880162560", "DCBA": "16805905"},
    }
    assert doc["requests"] == [
        {"table": "holding_register", "start": 0, "count": 4, "points": ["flow", "total"],
         "sent": True, "rtt_ms": 12.3, "ok": True, "error": None},
        {"table": "input_register", "start": 10, "count": 1, "points": ["status"],
         "sent": True, "rtt_ms": 500.4, "ok": False, "error": "unit 3: no answer within 0.5 s"},
    ]  # fmt: skip


def test_nothing_answered_when_no_request_brought_data() -> None:
    result = known_result()
    result.requests[0].data, result.requests[0].error = None, NOT_SENT
    assert not result.answered


def scan_report() -> ScanReport:
    links = [
        rtu_config("/dev/ttyUSB0", 9600, "N", 1, None, "scan"),
        rtu_config("/dev/ttyUSB0", 19200, "N", 1, None, "scan"),
    ]
    every = {3: "ok", 4: "exception 2", 1: "ok", 2: "exception 2"}
    refused = {fc: "exception 2" for fc in (3, 4, 1, 2)}
    silent = {3: "no answer", 4: "not tried", 1: "not tried", 2: "not tried"}
    return ScanReport(
        links,
        [2, 7, 9],
        0,
        [
            UnitResult(2, "9600 8N1", every, 0.0251),
            UnitResult(7, "9600 8N1", {**FC}, 0.1804),
            UnitResult(9, "9600 8N1", refused, 0.023),
            UnitResult(2, "19200 8N1", silent),
            UnitResult(7, "19200 8N1", {**silent, 3: "garbled"}),
            UnitResult(9, "19200 8N1", silent),
        ],
        bound_s(links, [2, 7, 9]),
        1.234,
    )


def test_scan_table_lists_who_answered_and_the_garbled() -> None:
    assert render_scan(scan_report()) == [
        "unit  line       status                      rtt  FC3      FC4    FC1    FC2",
        "   2  9600 8N1   answers                 25.1 ms  ok       exc 2  ok     exc 2",
        "   7  9600 8N1   answers                180.4 ms  ok",
        "   7  19200 8N1  garbled answer                -  garbled",
        "   9  9600 8N1   answers (exception 2)   23.0 ms  exc 2    exc 2  exc 2  exc 2",
        "3 unit(s) answered on serial /dev/ttyUSB0: 3 unit id(s) x 2 line setting(s) at address 0,"
        " 1.2 s (bound 1.8 s)",
    ]  # fmt: skip


def test_scan_bound_is_units_times_settings_times_timeout() -> None:
    report = scan_report()
    assert report.bound_s == pytest.approx(3 * 2 * 0.3)
    assert announce(report.links, report.units) == (
        "scanning 3 unit id(s) x 2 line setting(s) on serial /dev/ttyUSB0, 0.3 s per unit:"
        " done within 1.8 s"
    )


class Terminal(io.StringIO):
    """A text stream that says it is a terminal (the progress bar's only question to it)."""

    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_lines_otherwise_and_nothing_when_quiet() -> None:
    results = scan_report().results[:3]
    tty, plain, quiet = Terminal(), io.StringIO(), Terminal()
    for stream, q in ((tty, False), (plain, False), (quiet, True)):
        progress = Progress(3, stream, quiet=q)
        for i, res in enumerate(results):
            progress.step(res, i + 1)
        progress.finish()
    assert "\r\x1b[K[##########--------------------] 1/3 unit 2 9600 8N1  found 1" in tty.getvalue()
    assert "\r\x1b[Kunit 9 answers (exception 2) (9600 8N1)\n" in tty.getvalue()
    assert tty.getvalue().endswith("\r\x1b[K")
    assert plain.getvalue().splitlines() == [
        "scan: unit 2 answers (9600 8N1)",
        "scan: 1/3 (30%), found 1",
        "scan: unit 7 answers (9600 8N1)",
        "scan: 2/3 (60%), found 2",
        "scan: unit 9 answers (exception 2) (9600 8N1)",
        "scan: 3/3 (100%), found 3",
    ]
    assert quiet.getvalue() == ""


def holes_profile(
    addresses: list[int], unreadable: tuple[tuple[int, int], ...] = ()
) -> ModbusProfile:
    return ModbusProfile.model_validate(
        {
            "name": "m",
            "kind": "k",
            "max_gap": 124,
            "points": [
                {"name": f"p{a}", "table": "holding_register", "address": a} for a in addresses
            ],
            "unreadable": [
                {"table": "holding_register", "start": lo, "end": hi} for lo, hi in unreadable
            ],
        }
    )


# (point addresses, registers the device refuses, advice). The device is a
# register map in memory: a read touching a refused register gets exception 2.
# The search and its wording are gateway.sources.holes' (tests/unit/test_holes.py);
# these check the probe's use of it: its device and profile, its read budget.
WHY = "refused with exception 2 (illegal data address)"
ADVICE: list[tuple[list[int], set[int], list[str]]] = [
    (
        [0, 10, 30, 40],
        set(range(20, 30)),
        [
            f"device d: holding_register 20..29 {WHY}; declare `unreadable: [{{table:"
            " holding_register, start: 20, end: 29}]` in profile m"
        ],
    ),
    (
        [0, 10, 30],
        {5, 6, 20, 25, 26},
        [
            f"device d: holding_register 5..6, 20, 25..26 {WHY}; declare `unreadable:"
            " [{table: holding_register, start: 5, end: 6},"
            " {table: holding_register, start: 20, end: 20},"
            " {table: holding_register, start: 25, end: 26}]` in profile m"
        ],
    ),
    (
        [0, 10],
        {10},
        [
            f"device d: point p10 (holding_register 10) {WHY} when read alone:"
            " check its address in profile m, or remove it"
        ],
    ),
    (
        [0, 120],
        set(range(1, 120, 2)),  # every other register: more holes than reads to find them
        [
            "device d: holding_register 1, 3, 5, 7, 9, 11, 13..119"
            f" {WHY} (from 14 on not searched register by register: 65 reads spent; the"
            " device's own range may be narrower); declare `unreadable: ["
            + ", ".join(
                f"{{table: holding_register, start: {a}, end: {a}}}" for a in (1, 3, 5, 7, 9, 11)
            )
            + ", {table: holding_register, start: 13, end: 119}]` in profile m"
        ],
    ),
]


@pytest.mark.parametrize(("addresses", "holes", "advice"), ADVICE)
def test_unreadable_advice(addresses: list[int], holes: set[int], advice: list[str]) -> None:
    from gateway.commissioning.advice import MAX_READS, unreadable_advice
    from gateway.errors import DeviceException

    reads: list[tuple[int, int]] = []

    async def read(table: object, address: int, count: int) -> list[int]:
        reads.append((address, count))
        if holes & set(range(address, address + count)):
            raise DeviceException("exception code 2", 2)
        return [0] * count

    profile = holes_profile(addresses)
    (request,) = plan_profile(profile)
    assert asyncio.run(unreadable_advice(read, request, "d", profile, 124)) == advice
    assert len(reads) <= MAX_READS + 1  # past the budget each gap is read once more


def test_the_advised_profile_plans_around_the_hole() -> None:
    (request,) = plan_profile(holes_profile([0, 10, 30, 40]))
    assert (request.address, request.count) == (0, 41)
    fixed = plan_profile(holes_profile([0, 10, 30, 40], ((20, 29),)))
    assert [(r.address, r.count) for r in fixed] == [(0, 11), (30, 11)]
