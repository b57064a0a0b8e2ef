"""A simulated site for the probe and scan tests: the same units over Modbus TCP and a pty RTU line.

On each line: units 2 and 7 answer (profile ``meter-test``, constant values),
unit 4 answers 0.15 s late (``slow``), unit 9 answers every request with
exception 2, and unit 12 is a meter whose map has a reserved range the
profile ``meter-holes-naive`` does not declare (``meter-holes`` does, and the
simulator serves that one). The RTU line runs with wire time at 9600 baud.
"""

from __future__ import annotations

from pathlib import Path

PROFILES = {
    "meter-test.yaml": """\
name: meter-test
kind: flow
description: A test meter with constant values.
points:
  - {name: flow_rate, table: holding_register, address: 0, type: float32, unit: m3/h,
     sim: {kind: constant, value: 123.5}}
  - {name: total, table: holding_register, address: 2, type: uint32, order: CDAB, unit: m3,
     sim: {kind: constant, value: 70000}}
  - {name: temp, table: holding_register, address: 4, type: int16, scale: 0.1, unit: degC,
     sim: {kind: constant, value: 21.5}}
  - {name: status, table: input_register, address: 10, sim: {kind: constant, value: 3}}
  - {name: pump_on, table: coil, address: 0, type: bool, sim: {kind: constant, value: 1}}
""",
    "meter-holes.yaml": """\
name: meter-holes
kind: flow
max_gap: 32
unreadable: [{table: holding_register, start: 20, end: 29}]
points:
  - {name: a, table: holding_register, address: 0, sim: {kind: constant, value: 1}}
  - {name: b, table: holding_register, address: 10, sim: {kind: constant, value: 2}}
  - {name: c, table: holding_register, address: 30, sim: {kind: constant, value: 3}}
  - {name: d, table: holding_register, address: 40, sim: {kind: constant, value: 4}}
""",
    "meter-holes-naive.yaml": """\
name: meter-holes-naive
kind: flow
max_gap: 32
points:
  - {name: a, table: holding_register, address: 0}
  - {name: b, table: holding_register, address: 10}
  - {name: c, table: holding_register, address: 30}
  - {name: d, table: holding_register, address: 40}
""",
}

UNITS = (
    ("m2", "meter-test", 2),
    ("m7", "meter-test", 7),
    ("slow", "meter-test", 4),
    ("refuses", "meter-test", 9),
    ("holes", "meter-holes", 12),
)


def write_site(folder: Path, tcp_port: int) -> Path:
    """The site file (and its profile folder) in ``folder``; the RTU line at folder/rs485."""
    (folder / "profiles").mkdir(parents=True, exist_ok=True)
    for name, text in PROFILES.items():
        (folder / "profiles" / name).write_text(text)
    devices = []
    for line in ("tcp", "rtu"):
        for dev, profile, unit in UNITS:
            devices.append(
                f"  - {{id: {line}-{dev}, profile: {profile}, source: {line}, unit: {unit}}}"
            )
    faults = []
    for line in ("tcp", "rtu"):
        faults.append(f"        {line}-slow: {{fault: {{kind: slow, delay_s: 0.15}}}}")
        faults.append(f"        {line}-refuses: {{fault: {{kind: exception, exception_code: 2}}}}")
    site = folder / "site.yaml"
    site.write_text(
        "site: commissioning-test\n"
        "profile_dirs: [profiles]\n"
        "sources:\n"
        f"  - {{id: tcp, type: modbus_tcp, host: 127.0.0.1, port: {tcp_port}, timeout_s: 0.3}}\n"
        f"  - {{id: rtu, type: modbus_rtu, port: {folder / 'rs485'}, baudrate: 9600,"
        " timeout_s: 0.3}\n"
        "devices:\n" + "\n".join(devices) + "\n"
        "simulation:\n"
        "  wire_time: true\n"
        "  scenarios:\n"
        "    default:\n"
        "      devices:\n" + "\n".join(faults) + "\n"
    )
    return site
