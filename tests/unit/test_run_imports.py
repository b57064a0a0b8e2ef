"""What a ``gateway run`` process imports: the command line, the daemon and every plugin's
registration, but none of the optional stacks a site without them does not use."""

from __future__ import annotations

import subprocess
import sys

# The web console's stack (a separate `gateway console` process), the OPC UA client,
# the PDF and Excel libraries, influxdb-client (the influx sink's v2 mode only):
# megabytes of resident memory each, and argon2's dummy login hash alone touches
# 64 MiB (bench peak RSS, docs/bench.md).
OPTIONAL = (
    "fastapi",
    "starlette",
    "uvicorn",
    "jinja2",
    "argon2",
    "asyncua",
    "reportlab",
    "openpyxl",
    "influxdb_client",
    "aiohttp",
)

PROBE = """
import sys
from gateway.cli import build_parser
import gateway.app
import gateway.plugins
import gateway.plugins.influx.sink

build_parser()
gateway.plugins.registry()
print(" ".join(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_gateway_run_imports_no_optional_stack() -> None:
    run = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    loaded = set(run.stdout.split())
    assert "gateway" in loaded
    assert sorted(loaded & set(OPTIONAL)) == []


def test_the_console_command_is_still_there() -> None:
    from gateway.cli import build_parser

    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "console", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "--listen" in run.stdout
    assert "console" in build_parser().format_help()
