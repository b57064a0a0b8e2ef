"""``gateway probe`` and ``gateway scan`` against the simulator, over Modbus TCP and a pty RTU line.

One ``gateway-sim`` process serves tests/integration/commissioning_site.py:
units 2 and 7 answer, unit 4 answers 0.15 s late, unit 9 answers exception 2
to everything, unit 12 has an undeclared reserved range; the RTU line runs
with wire time at 9600 baud. The commands run in-process through
``gateway.cli.main`` (and once as a real process, for Ctrl-C).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.commissioning.link import tcp_config
from gateway.commissioning.probe import ProbeOptions, ProbeTarget, run_probe
from gateway.profiles.registry import ProfileRegistry
from gateway.profiles.schema import ModbusProfile
from tests.integration.commissioning_site import write_site
from tests.simproc import DEMO_SITE, bin_path, free_port, running_sim

LINES = ("tcp", "rtu")
VALUES = {"flow_rate": 123.5, "total": 70000, "temp": 21.5, "status": 3, "pump_on": True}


class Sim:
    def __init__(self, site: Path, tcp_port: int) -> None:
        self.site = site
        self.folder = site.parent
        self.tcp = f"127.0.0.1:{tcp_port}"
        self.rtu = str(self.folder / "rs485")
        self.profiles = str(self.folder / "profiles")

    def link(self, line: str) -> list[str]:
        return ["--tcp", self.tcp] if line == "tcp" else ["--serial", self.rtu]

    def adhoc(self, line: str, unit: int, profile: str) -> list[str]:
        """``gateway probe`` arguments without a site: link, unit, profile and its folder."""
        return ["probe", *self.link(line), "--unit", str(unit), "--profile", profile,
                "--profile-dir", self.profiles]  # fmt: skip


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    port = free_port()
    site = write_site(tmp_path_factory.mktemp("commissioning"), port)
    with running_sim(site, {}):
        yield Sim(site, port)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def masked(text: str) -> str:
    """Round-trip times vary: each (and its padding) becomes <rtt>.

    The exception's name after its code (which the Modbus client may add) is dropped.
    """
    text = re.sub(r" +\d+\.\d ms", " <rtt>", text)
    text = re.sub(r"(exception code \d+) \([a-z ]+\)", r"\1", text)
    return re.sub(r" +rtt ", " rtt ", text)


GOOD_TABLE = """\
point      table             addr  raw        value  unit  quality
flow_rate  holding_register     0  42F7 0000  123.5  m3/h  good
total      holding_register     2  1170 0001  70000  m3    good
temp       holding_register     4  00D7       21.5   degC  good
status     input_register      10  0003       3            good
pump_on    coil                 0  1          true         good

request           start  count rtt  result
coil                  0      1 <rtt>  ok
input_register       10      1 <rtt>  ok
holding_register      0      5 <rtt>  ok
"""


@pytest.mark.parametrize("line", LINES)
def test_probe_a_site_device(sim: Sim, capsys: pytest.CaptureFixture[str], line: str) -> None:
    rc, out, err = run(capsys, "probe", str(sim.site), f"{line}-m2")
    where = f"tcp {sim.tcp}" if line == "tcp" else f"serial {sim.rtu} 9600 8N1"
    assert (rc, err) == (0, "")
    assert masked(out) == (
        f"probe {line}-m2: unit 2 on {where}, profile meter-test (5 points in 3 request(s))\n\n"
        + GOOD_TABLE
    )


@pytest.mark.parametrize("line", LINES)
def test_probe_ad_hoc_with_every_word_order(
    sim: Sim, capsys: pytest.CaptureFixture[str], line: str
) -> None:
    rc, out, _ = run(capsys, *sim.adhoc(line, 7, "meter-test"), "--orders")
    assert rc == 0
    assert masked(out).splitlines()[2:10] == [
        "point      table             addr  raw        value  unit  quality  ABCD       CDAB          BADC           DCBA",  # noqa: E501
        "flow_rate  holding_register     0  42F7 0000  123.5  m3/h  good     123.5*     2.402246e-41  -3.934787e+33  8.869939e-41",  # noqa: E501
        "total      holding_register     2  1170 0001  70000  m3    good     292552705  70000*        1880162560     16805905",  # noqa: E501
        "temp       holding_register     4  00D7       21.5   degC  good",
        "status     input_register      10  0003       3            good",
        "pump_on    coil                 0  1          true         good",
        "(* the profile's order; one-register points have none to choose)",
        "",
    ]


@pytest.mark.parametrize("line", LINES)
def test_probe_json(sim: Sim, capsys: pytest.CaptureFixture[str], line: str) -> None:
    rc, out, _ = run(capsys, "probe", str(sim.site), f"{line}-m7", "--json")
    assert rc == 0
    doc = json.loads(out)
    assert set(doc) == {
        "device", "unit", "link", "profile", "ts_ns", "answered", "points", "requests", "advice",
    }  # fmt: skip
    assert (doc["device"], doc["unit"], doc["profile"], doc["answered"]) == (
        f"{line}-m7",
        7,
        "meter-test",
        True,
    )
    assert {p["name"]: p["value"] for p in doc["points"]} == VALUES
    assert {p["quality"] for p in doc["points"]} == {"good"}
    assert [(r["table"], r["start"], r["count"], r["ok"]) for r in doc["requests"]] == [
        ("coil", 0, 1, True),
        ("input_register", 10, 1, True),
        ("holding_register", 0, 5, True),
    ]
    assert all(isinstance(r["rtt_ms"], float) for r in doc["requests"])
    assert doc["advice"] == []


@pytest.mark.parametrize("line", LINES)
def test_a_slow_unit_within_the_timeout_reads_and_beyond_it_is_bad_with_the_reason(
    sim: Sim, capsys: pytest.CaptureFixture[str], line: str
) -> None:
    rc, out, _ = run(capsys, "probe", str(sim.site), f"{line}-slow", "--json")
    assert rc == 0
    assert {p["name"]: p["value"] for p in json.loads(out)["points"]} == VALUES
    rc, out, _ = run(capsys, "probe", str(sim.site), f"{line}-slow", "--json", "--timeout", "0.1")
    assert rc == 1  # nothing answered
    doc = json.loads(out)
    first, *rest = doc["requests"]
    assert (first["sent"], first["error"]) == (True, "unit 4: no answer within 0.1 s")
    not_sent = "not sent: the unit did not answer an earlier request"
    assert [(r["sent"], r["error"]) for r in rest] == [(False, not_sent)] * 2
    assert {p["quality"] for p in doc["points"]} == {"bad"}
    assert doc["points"][0]["reason"] == not_sent  # flow_rate: in the last request


@pytest.mark.parametrize("line", LINES)
def test_a_unit_refusing_everything(
    sim: Sim, capsys: pytest.CaptureFixture[str], line: str
) -> None:
    rc, out, _ = run(capsys, "probe", str(sim.site), f"{line}-refuses")
    assert rc == 1
    bad = "flow_rate  holding_register     0  -    -      m3/h  bad      unit 9: exception code 2"
    assert bad in out
    assert out.endswith(
        "\nadvice:\n  unit 9 refuses every read (exception 2): is it the device meter-test"
        " describes, at this unit id?\n"
    )


@pytest.mark.parametrize("line", LINES)
def test_probe_finds_the_range_to_declare_unreadable(
    sim: Sim, capsys: pytest.CaptureFixture[str], line: str
) -> None:
    rc, out, _ = run(capsys, *sim.adhoc(line, 12, "meter-holes-naive"))
    assert rc == 1
    requests, advice = masked(out).split("\n\n", 2)[2].split("\nadvice:\n")
    assert requests == (
        "request           start  count rtt  result\n"
        "holding_register      0     41 <rtt>  unit 12: exception code 2\n"
    )
    # The wording is the advice function's; the range to declare is the point.
    assert "unreadable: [{table: holding_register, start: 20, end: 29}]" in advice


def test_the_advice_is_right_the_declared_profile_reads(
    sim: Sim, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = run(capsys, *sim.adhoc("rtu", 12, "meter-holes"), "--json")
    assert rc == 0
    doc = json.loads(out)
    assert {p["name"]: p["value"] for p in doc["points"]} == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert [(r["start"], r["count"]) for r in doc["requests"]] == [(0, 11), (30, 11)]


def test_watch_prints_a_read_per_interval(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "probe", str(sim.site), "tcp-m2", "--watch", "0.2", "--count", "3",
                     "--json")  # fmt: skip
    assert rc == 0
    docs = [json.loads(line) for line in out.splitlines()]
    assert len(docs) == 3 and all(d["answered"] for d in docs)
    assert docs[0]["ts_ns"] < docs[1]["ts_ns"] < docs[2]["ts_ns"]
    rc, out, _ = run(capsys, "probe", str(sim.site), "tcp-m2", "--watch", "0.2", "--count", "2")
    assert "\x1b" not in out  # not a terminal: the frames follow each other
    assert re.findall(r"^\d\d:\d\d:\d\d  read (\d), every 0.2 s \(Ctrl-C ends\)$", out, re.M) == [
        "1",
        "2",
    ]


class Terminal(io.StringIO):
    """A text stream that says it is a terminal (all run_probe asks of it)."""

    def isatty(self) -> bool:
        return True


def test_watch_on_a_terminal_refreshes_in_place(sim: Sim) -> None:
    reg, problems = ProfileRegistry.load([Path(sim.profiles)])
    assert not problems
    profile = reg.get("meter-test")
    assert isinstance(profile, ModbusProfile)
    host, port = sim.tcp.split(":")
    target = ProbeTarget("m2", tcp_config(host, int(port), 1.0, "probe"), 2, profile)
    term = Terminal()
    assert asyncio.run(run_probe(target, ProbeOptions(watch_s=0.2, count=2), term)) == 0
    first, second = term.getvalue().split("\x1b[J")
    height = first.count("\n")
    # Back up over the whole first frame, clear below it, print the second.
    assert first.endswith(f"\n\x1b[{height}F")
    assert len(second.splitlines()) == height and "read 2, every 0.2 s" in second


def test_ctrl_c_ends_a_watch_cleanly(sim: Sim) -> None:
    proc = subprocess.Popen(
        [bin_path("gateway"), "probe", str(sim.site), "tcp-m2", "--watch", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "read 2," in proc.stdout.readline():
                break
        else:
            raise AssertionError("no second read within 30 s")
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=10)
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0
    assert "Traceback" not in err


# --------------------------------------------------------------------------- scan

SCAN_TABLE = """\
unit  line  status rtt  FC3    FC4    FC1    FC2
   2  tcp   answers <rtt>  ok     exc 2  ok     exc 2
   4  tcp   answers <rtt>  ok     exc 2  ok     exc 2
   7  tcp   answers <rtt>  ok     exc 2  ok     exc 2
   9  tcp   answers (exception 2) <rtt>  exc 2  exc 2  exc 2  exc 2
  12  tcp   answers <rtt>  ok     exc 2  exc 2  exc 2
5 unit(s) answered on tcp {tcp}: 13 unit id(s) x 1 line setting(s) at address 0, <s> (bound 13.0 s)
"""


def test_scan_a_tcp_gateways_units(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "scan", "--tcp", sim.tcp, "--units", "1-13")
    assert rc == 0
    out = re.sub(r"\d+\.\d s \(bound", "<s> (bound", out)
    assert re.sub(r"(answers(?: \(exception 2\))?) +", r"\1 ", masked(out)) == SCAN_TABLE.format(
        tcp=sim.tcp
    )
    assert err.splitlines()[0] == (
        f"scanning 13 unit id(s) x 1 line setting(s) on tcp {sim.tcp}, 1 s per unit:"
        " done within 13.0 s"
    )


def test_scan_an_rtu_line_within_its_bound(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.monotonic()
    rc, out, err = run(capsys, "scan", "--serial", sim.rtu, "--units", "1-13", "--json")
    took = time.monotonic() - t0
    assert rc == 0
    assert err.splitlines()[0] == (
        f"scanning 13 unit id(s) x 1 line setting(s) on serial {sim.rtu}, 0.3 s per unit:"
        " done within 3.9 s"
    )
    doc = json.loads(out)
    assert {u["unit"]: u["status"] for u in doc["found"]} == {
        2: "answers", 4: "answers", 7: "answers", 9: "answers (exception 2)", 12: "answers",
    }  # fmt: skip
    assert doc["bound_s"] == 3.9
    # The promise, with a generous margin for a loaded machine (start-up included).
    assert doc["elapsed_s"] <= doc["bound_s"] * 1.5
    assert took <= doc["bound_s"] * 1.5 + 10


def test_scan_json_shape(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(
        capsys, "scan", "--serial", sim.rtu, "--units", "2,9", "--timeout", "1", "--json",
        "--quiet",
    )  # fmt: skip
    assert (rc, err) == (0, "")
    doc = json.loads(out)
    assert set(doc) == {
        "links", "units_asked", "address", "timeout_s", "bound_s", "elapsed_s", "found",
        "garbled", "unopened",
    }  # fmt: skip
    assert doc["links"] == [f"serial {sim.rtu} 9600 8N1"]
    assert (doc["units_asked"], doc["address"], doc["timeout_s"], doc["bound_s"]) == (
        2, 0, [1.0], 2.0,
    )  # fmt: skip
    two, nine = doc["found"]
    assert {k: v for k, v in two.items() if k != "rtt_ms"} == {
        "unit": 2,
        "line": "9600 8N1",
        "baud": 9600,
        "parity": "N",
        "status": "answers",
        "alive": True,
        "exception": None,
        "functions": {"3": "ok", "4": "exception 2", "1": "ok", "2": "exception 2"},
    }
    assert (nine["status"], nine["exception"]) == ("answers (exception 2)", 2)
    assert nine["functions"] == {fc: "exception 2" for fc in ("3", "4", "1", "2")}
    assert doc["garbled"] == [] and doc["unopened"] == []


def test_scan_tries_each_line_setting(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(
        capsys, "scan", "--serial", sim.rtu, "--units", "2,3", "--baud", "9600,19200",
        "--parity", "N,E", "--json", "--quiet",
    )  # fmt: skip
    assert rc == 0
    doc = json.loads(out)
    assert len(doc["links"]) == 4 and doc["bound_s"] == pytest.approx(2 * 4 * 0.3)
    assert [(u["unit"], u["line"]) for u in doc["found"]] == [(2, "9600 8N1"), (2, "19200 8N1")]
    # A pty refuses parity: those settings are reported, the others still scanned.
    assert [u["line"] for u in doc["unopened"]] == ["9600 8E1", "19200 8E1"]
    assert "(22, 'Invalid argument')" in doc["unopened"][0]["error"]


@pytest.mark.parametrize("line", LINES)
def test_a_unit_too_slow_for_the_timeout_is_not_found_and_does_not_disturb_the_next(
    sim: Sim, capsys: pytest.CaptureFixture[str], line: str
) -> None:
    rc, out, _ = run(
        capsys, "scan", *sim.link(line), "--units", "4,5,7", "--timeout", "0.1", "--json",
        "--quiet",
    )  # fmt: skip
    assert rc == 0
    assert [u["unit"] for u in json.loads(out)["found"]] == [7]


def test_nobody_answering_exits_1(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "scan", "--serial", sim.rtu, "--units", "20-21", "--quiet")
    assert rc == 1
    assert out.startswith(f"0 unit(s) answered on serial {sim.rtu}: 2 unit id(s)")


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_one_clear_line_and_exit_2(
    sim: Sim, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    nowhere = str(tmp_path / "ttyUSB9")
    cases = [
        (["probe", str(sim.site), "nope"],
         f"error: {sim.site}: no device 'nope' (devices: tcp-m2,"),
        (["probe", "--tcp", sim.tcp, "--profile", "nope"],
         "error: unknown profile 'nope' (known: "),
        (["probe", "--serial", nowhere, "--profile", "meter-test", "--profile-dir", sim.profiles],
         f"error: serial port {nowhere} does not exist"),
        (["scan", "--serial", nowhere], f"error: serial port {nowhere} does not exist"),
        (["scan", "--serial", sim.rtu, "--units", "1-300"],
         "error: --units '1-300': unit ids are 1..247 (0 is broadcast)"),
        (["scan", "--serial", sim.rtu, "--units", "a-b"],
         "error: --units 'a-b': 'a-b' is not a unit id or a range like 1-20"),
        (["scan", "--serial", sim.rtu, "--baud", "9601"], "error: --baud '9601': '9601' is not"),
        (["probe", "--tcp", sim.tcp], "error: --profile NAME is needed with --tcp/--serial"),
        (["probe"], "error: probe needs SITE.yaml DEVICE, or --tcp HOST:PORT / --serial PORT"),
        (["probe", "--tcp", "127.0.0.1:x", "--profile", "meter-test"],
         "error: --tcp '127.0.0.1:x': the port must be a number (HOST:PORT)"),
        (["scan"], "error: scan needs --serial PORT or --tcp HOST:PORT"),
        (["probe", str(DEMO_SITE), "rfid-gate"],
         "error: device 'rfid-gate' is on a serial_line source; probe reads Modbus"),
        ([*sim.adhoc("tcp", 2, "meter-test"), "--max-gap", "200"],
         "error: --max-gap 200: 0..124 registers"),
        (["probe", str(sim.site), "tcp-m2", "--max-gap", "-1"],
         "error: --max-gap -1: 0..124 registers"),
        (["probe", "--serial", sim.rtu, "--baud", "9600,19200", "--profile", "meter-test"],
         "error: probe reads with one baud rate and parity (scan tries several)"),
    ]  # fmt: skip
    for args, message in cases:
        rc, out, err = run(capsys, *args)
        assert (rc, out) == (2, ""), args
        assert len(err.splitlines()) == 1 and err.startswith(message), (args, err)
    assert not os.path.exists(nowhere)
