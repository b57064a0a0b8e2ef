"""schemathesis against the console's own OpenAPI description: every operation, bounded
examples, over a real socket to a running console on real Mosquitto, as an admin with an
API token. No request may get a 5xx (the check ``not_a_server_error``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from tests.fixtures.servers import Mosquitto
from tests.integration.console_support import add_user, login, running_console, site_yaml, wait

SITE = "schema-park"
# The schemathesis CLI, run in a child process with one adjustment: grafana-client pulls in
# urllib3-future (through niquests), which replaces urllib3 and its pool container, and
# schemathesis counts open connections through the stock container's API. Counting none
# only means a dropped keep-alive request is always sent once more.
RUN_SCHEMATHESIS = """
import sys
import schemathesis.transport.requests as transport
from schemathesis.cli import schemathesis
transport._count_opened_connections = lambda session: 0
sys.argv[0] = "schemathesis"
sys.exit(schemathesis())
"""


@pytest.mark.timeout(400)
def test_the_console_api_gives_no_5xx_to_generated_requests(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    site = site_yaml(tmp_path, SITE, mosquitto)
    db = tmp_path / "console.sqlite"
    add_user(db, "root", "admin")
    with running_console(site, db) as base:
        admin = login(base, "root")
        # Connected to the broker: an action on an unknown alarm is a 404, not a 503.
        wait(lambda: admin.get("/api/status").json()["broker_connected"], 30, "the broker")
        token = admin.post("/api/tokens", json={"label": "schemathesis"}).json()["token"]
        out = subprocess.run(
            [sys.executable, "-c", RUN_SCHEMATHESIS, "run", f"{base}/openapi.json",
             "--header", f"Authorization: Bearer {token}",
             "--checks", "not_a_server_error",
             "--max-examples", "15", "--seed", "14", "--request-timeout", "20",
             "--phases", "examples,coverage,fuzzing",
             "--report", "junit", "--report-dir", str(tmp_path / "report"),
             "--no-color"],
            capture_output=True, text=True, timeout=360, cwd=tmp_path,
        )  # fmt: skip
        summary = out.stdout[-4000:]
        assert out.returncode == 0, summary + out.stderr[-2000:]
        # It did run: every operation of the description was exercised, none failed.
        (report,) = (tmp_path / "report").glob("junit*.xml")
        suite = ElementTree.parse(report).getroot()
        tested = {case.get("name") for case in suite.iter("testcase")}
        paths: Any = admin.get("/openapi.json").json()["paths"]
        wanted = {f"{m.upper()} {p}" for p, ops in paths.items() for m in ops}
        assert tested == wanted, (tested ^ wanted, summary)
        assert suite.get("failures") == "0" and suite.get("errors") == "0", summary
        # The console stayed up and the admin can still use it.
        assert admin.get("/api/me").json()["name"] == "root"
