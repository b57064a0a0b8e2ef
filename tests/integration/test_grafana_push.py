"""``gateway grafana push`` against a stand-in Grafana HTTP API.

Grafana cannot be installed on these machines, so this test runs a small
FAKE Grafana: an in-process HTTP server on loopback that implements only the
endpoints grafana-client calls for a push (folders, datasources by uid,
dashboards by uid and ``POST /api/dashboards/db``), with Grafana's status
codes (404 unknown, 409 duplicate, 412 changed without overwrite, 401 bad
credentials) and records every request. It is a mock of what cannot run
here; everything else (grafana-client, our push logic, the committed
dashboard JSON, the CLI parser) is real.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gateway.grafana import (
    DATASOURCE_UID,
    GrafanaPusher,
    GrafanaPushError,
    InfluxTarget,
    load_dashboards,
    register_cli,
)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
TOKEN = "glsa_test_token"


@dataclass
class FakeGrafanaState:
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    next_id: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]


def _handler(state: FakeGrafanaState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def _reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            auth = self.headers.get("Authorization", "")
            if auth == f"Bearer {TOKEN}":
                return True
            return auth == "Basic " + base64.b64encode(b"admin:admin").decode()

        def _body(self) -> Any:
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n)) if n else None

        def _route(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            with state.lock:
                state.requests.append((method, path))
            if not self._authorised():
                return self._reply(401, {"message": "Unauthorized"})
            body = self._body() if method in ("POST", "PUT") else None
            parts = path.strip("/").split("/")
            with state.lock:
                status, reply = self._dispatch(method, parts, body)
            self._reply(status, reply)

        def _dispatch(self, method: str, p: list[str], body: Any) -> tuple[int, Any]:
            s = state
            if p[:2] == ["api", "folders"]:
                if method == "POST" and len(p) == 2:
                    uid = body.get("uid")
                    if uid in s.folders:
                        return 409, {"message": "a folder with the same uid already exists"}
                    s.folders[uid] = {"uid": uid, "title": body["title"], "id": s.next_id,
                                      "version": 1}
                    s.next_id += 1
                    return 200, s.folders[uid]
                if len(p) == 3:
                    f = s.folders.get(p[2])
                    if f is None:
                        return 404, {"message": "folder not found"}
                    if method == "GET":
                        return 200, f
                    if method == "PUT":
                        f["title"] = body.get("title", f["title"])
                        f["version"] += 1
                        return 200, f
            if p[:2] == ["api", "datasources"]:
                if method == "POST" and len(p) == 2:
                    if body["uid"] in s.datasources or any(
                        d["name"] == body["name"] for d in s.datasources.values()
                    ):
                        return 409, {"message": "data source with the same name already exists"}
                    stored = {k: v for k, v in body.items() if k != "secureJsonData"}
                    stored["id"] = s.next_id
                    s.next_id += 1
                    s.datasources[body["uid"]] = stored
                    return 200, {"datasource": stored, "id": stored["id"]}
                if len(p) == 4 and p[2] == "uid":
                    d = s.datasources.get(p[3])
                    if d is None:
                        return 404, {"message": "Data source not found"}
                    if method == "GET":
                        return 200, d
                    if method == "PUT":
                        new = {k: v for k, v in body.items() if k != "secureJsonData"}
                        new["id"] = d["id"]
                        s.datasources[p[3]] = new
                        return 200, {"datasource": new}
            if p[:3] == ["api", "dashboards", "uid"] and method == "GET" and len(p) == 4:
                d = s.dashboards.get(p[3])
                if d is None:
                    return 404, {"message": "Dashboard not found"}
                return 200, copy.deepcopy(d)
            if p == ["api", "dashboards", "db"] and method == "POST":
                dash = body["dashboard"]
                uid = dash["uid"]
                old = s.dashboards.get(uid)
                if old is not None and not body.get("overwrite"):
                    return 412, {"message": "The dashboard has been changed by someone else"}
                if body.get("folderUid") not in s.folders:
                    return 400, {"message": "folder not found"}
                stored = copy.deepcopy(dash)
                stored["id"] = old["dashboard"]["id"] if old else s.next_id
                stored["version"] = old["dashboard"]["version"] + 1 if old else 1
                if not old:
                    s.next_id += 1
                s.dashboards[uid] = {"dashboard": stored,
                                     "meta": {"folderUid": body["folderUid"]}}
                return 200, {"uid": uid, "id": stored["id"], "status": "success",
                             "version": stored["version"]}
            return 404, {"message": "Not found"}

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

    return Handler


@dataclass
class FakeGrafana:
    url: str
    state: FakeGrafanaState


@pytest.fixture
def fake_grafana() -> Iterator[FakeGrafana]:
    state = FakeGrafanaState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeGrafana(f"http://127.0.0.1:{server.server_address[1]}", state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


TARGET = InfluxTarget(url="http://influxdb:8086", database="fsg")


def test_push_creates_then_second_push_changes_nothing(fake_grafana: FakeGrafana) -> None:
    dashboards = load_dashboards(DASHBOARDS)
    assert len(dashboards) >= 6
    pusher = GrafanaPusher.connect(fake_grafana.url, token=TOKEN, timeout_s=5)

    first = pusher.push(TARGET, dashboards)
    st = fake_grafana.state
    assert first.count("created") == 2 + len(dashboards), first.lines()
    assert set(st.folders) == {"fsg"}
    assert set(st.datasources) == {DATASOURCE_UID}
    ds = st.datasources[DATASOURCE_UID]
    assert ds["type"] == "influxdb" and ds["jsonData"]["version"] == "InfluxQL"
    assert ds["url"] == "http://influxdb:8086" and ds["jsonData"]["dbName"] == "fsg"
    assert set(st.dashboards) == {d["uid"] for d in dashboards}
    assert all(d["meta"]["folderUid"] == "fsg" for d in st.dashboards.values())
    # Every panel target points at the datasource the push created.
    for d in st.dashboards.values():
        for panel in d["dashboard"]["panels"]:
            for t in panel.get("targets", []):
                assert t["datasource"]["uid"] == DATASOURCE_UID

    writes_before = len(st.writes())
    second = pusher.push(TARGET, dashboards)
    assert second.count("unchanged") == 2 + len(dashboards), second.lines()
    assert len(st.writes()) == writes_before, st.writes()[writes_before:]
    assert all(d["dashboard"]["version"] == 1 for d in st.dashboards.values())


def test_changed_dashboard_overwrites_same_uid(fake_grafana: FakeGrafana) -> None:
    dashboards = load_dashboards(DASHBOARDS)
    pusher = GrafanaPusher.connect(fake_grafana.url, token=TOKEN, timeout_s=5)
    pusher.push(TARGET, dashboards)
    st = fake_grafana.state
    ids = {uid: d["dashboard"]["id"] for uid, d in st.dashboards.items()}

    edited = [dict(d) for d in dashboards]
    edited[0]["title"] = edited[0]["title"] + " (edited)"
    report = pusher.push(InfluxTarget(url="http://other:8086", database="fsg"), edited)
    assert ("dashboard", edited[0]["uid"], "updated") in report.actions
    assert ("datasource", DATASOURCE_UID, "updated") in report.actions
    assert report.count("created") == 0
    # Same uids, same ids, no duplicates; the edited one got a new version.
    assert {uid: d["dashboard"]["id"] for uid, d in st.dashboards.items()} == ids
    assert st.dashboards[edited[0]["uid"]]["dashboard"]["version"] == 2
    assert st.dashboards[edited[0]["uid"]]["dashboard"]["title"].endswith("(edited)")
    assert len(st.datasources) == 1
    assert st.datasources[DATASOURCE_UID]["url"] == "http://other:8086"


def test_secrets_rewrite_the_datasource_under_the_same_uid(fake_grafana: FakeGrafana) -> None:
    pusher = GrafanaPusher.connect(fake_grafana.url, user="admin", password="admin", timeout_s=5)
    target = InfluxTarget(url="http://influxdb:8086", database="fsg", token="influx-read-token")
    pusher.push(target, [])
    report = pusher.push(target, [])
    # Grafana never returns secrets, so they cannot be compared: rewritten, not duplicated.
    assert ("datasource", DATASOURCE_UID, "updated") in report.actions
    assert len(fake_grafana.state.datasources) == 1
    assert fake_grafana.state.datasources[DATASOURCE_UID]["jsonData"]["httpHeaderName1"] == (
        "Authorization"
    )


def test_bad_credentials_and_unreachable_grafana_are_clear_errors(
    fake_grafana: FakeGrafana,
) -> None:
    pusher = GrafanaPusher.connect(fake_grafana.url, token="wrong", timeout_s=5)
    with pytest.raises(GrafanaPushError, match=r"HTTP 401.*--token"):
        pusher.push(TARGET, [])
    from tests.simproc import free_port

    pusher = GrafanaPusher.connect(f"http://127.0.0.1:{free_port()}", token=TOKEN, timeout_s=2)
    with pytest.raises(GrafanaPushError, match="cannot reach Grafana"):
        pusher.push(TARGET, [])


def test_cli_push_twice(fake_grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]) -> None:
    ap = argparse.ArgumentParser(prog="gateway")
    register_cli(ap.add_subparsers(dest="command", required=True))
    argv = ["grafana", "push", "--url", fake_grafana.url, "--token", TOKEN,
            "--influx-url", "http://influxdb:8086", "--database", "fsg",
            "--dashboards", str(DASHBOARDS)]
    args = ap.parse_args(argv)
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "dashboard fsg-leakage: created" in out
    args = ap.parse_args(argv)
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "0 created, 0 updated" in out, out
