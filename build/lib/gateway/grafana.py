"""``gateway grafana push``: the folder, InfluxDB datasource and dashboards on a Grafana.

Uses grafana-client (the maintained successor of grafana-api) against
Grafana's HTTP API. The push is idempotent: every object has a fixed uid
(folder ``fsg``, datasource ``fsg-influxdb``, the dashboards' own uids), an
object that already matches is left alone, one that differs is overwritten
under the same uid, so pushing twice never makes duplicates and the second
push reports everything ``unchanged``. Datasource secrets (password, token)
cannot be read back from Grafana, so when they are given the datasource is
always rewritten (same uid).

The datasource is InfluxQL: InfluxDB 1.x directly, 2.x through its v1
compatibility API (a DBRP mapping; authenticate with ``--influx-token``),
and 3.x. The dashboards are the JSON files ``dashboards/build.py`` writes.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError

DEFAULT_FOLDER = "Facility safety"
DEFAULT_FOLDER_UID = "fsg"
DATASOURCE_UID = "fsg-influxdb"
DATASOURCE_NAME = "Facility safety InfluxDB"
# Keys Grafana adds to a stored dashboard that are not part of what we push.
_VOLATILE = ("id", "version", "iteration")


class GrafanaPushError(GatewayError):
    """Grafana refused or could not be reached."""


@dataclass(frozen=True)
class InfluxTarget:
    """Where Grafana's datasource reads from (InfluxQL)."""

    url: str = "http://localhost:8086"
    database: str = "fsg"
    username: str | None = None
    password: str | None = None
    # InfluxDB 2.x/3.x token, sent as "Authorization: Token ..." on the v1 API.
    token: str | None = None
    retention_policy: str | None = None


@dataclass
class PushReport:
    """What a push did, one line per object: (kind, uid, created|updated|unchanged)."""

    actions: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, kind: str, uid: str, action: str) -> None:
        self.actions.append((kind, uid, action))

    def count(self, action: str) -> int:
        return sum(1 for _k, _u, a in self.actions if a == action)

    def lines(self) -> list[str]:
        return [f"{kind} {uid}: {action}" for kind, uid, action in self.actions]


def default_dashboard_dir() -> Path:
    """``$FSG_DASHBOARDS``, else the ``dashboards/`` folder of the source tree."""
    env = os.environ.get("FSG_DASHBOARDS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "dashboards"


def load_dashboards(folder: Path) -> list[dict[str, Any]]:
    files = sorted(folder.glob("*.json"))
    if not files:
        raise GrafanaPushError(
            f"no dashboard JSON in {folder}; pass --dashboards DIR (the repository's dashboards/)"
        )
    out = []
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise GrafanaPushError(f"{path}: cannot read dashboard JSON: {exc}") from exc
        if not isinstance(data, dict) or not data.get("uid") or not data.get("title"):
            raise GrafanaPushError(f"{path}: a dashboard needs a uid and a title")
        out.append(data)
    return out


def datasource_payload(target: InfluxTarget, uid: str = DATASOURCE_UID) -> dict[str, Any]:
    """The datasource as Grafana's API (and file provisioning) describe it."""
    json_data: dict[str, Any] = {"version": "InfluxQL", "dbName": target.database,
                                 "httpMode": "POST"}
    if target.retention_policy:
        json_data["retentionPolicy"] = target.retention_policy
    secure: dict[str, str] = {}
    if target.token:
        json_data["httpHeaderName1"] = "Authorization"
        secure["httpHeaderValue1"] = f"Token {target.token}"
    if target.password:
        secure["password"] = target.password
    d: dict[str, Any] = {
        "uid": uid,
        "name": DATASOURCE_NAME,
        "type": "influxdb",
        "access": "proxy",
        "url": target.url,
        "database": target.database,
        "user": target.username or "",
        "basicAuth": False,
        "isDefault": False,
        "jsonData": json_data,
    }
    if secure:
        d["secureJsonData"] = secure
    return d


def _same_datasource(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    for key in ("name", "type", "access", "url", "database", "user", "basicAuth"):
        if current.get(key, "" if key != "basicAuth" else False) != wanted[key]:
            return False
    have = current.get("jsonData") or {}
    return all(have.get(k) == v for k, v in wanted["jsonData"].items())


def _strip(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in _VOLATILE}


class GrafanaPusher:
    """Creates or updates the gateway's objects on one Grafana (see the module docstring)."""

    def __init__(self, api: Any, folder: str = DEFAULT_FOLDER,
                 folder_uid: str = DEFAULT_FOLDER_UID) -> None:
        # grafana-client has no type hints: ``api`` is its GrafanaApi.
        self.api = api
        self.folder = folder
        self.folder_uid = folder_uid

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        folder: str = DEFAULT_FOLDER,
        folder_uid: str = DEFAULT_FOLDER_UID,
    ) -> GrafanaPusher:
        from grafana_client.api import GrafanaApi

        credential: str | tuple[str, str] | None = token
        if credential is None and user is not None:
            credential = (user, password or "")
        api: Any = GrafanaApi.from_url(url, credential=credential, timeout=timeout_s)
        return cls(api, folder, folder_uid)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Call grafana-client, translating its errors; None on 404."""
        from grafana_client.client import GrafanaClientError, GrafanaException

        try:
            return fn(*args, **kw)
        except GrafanaClientError as exc:
            if exc.status_code == 404:
                return None
            hint = " (check --token or --user/--password)" if exc.status_code in (401, 403) else ""
            raise GrafanaPushError(
                f"grafana: {what}: HTTP {exc.status_code}: {exc.message}{hint}"
            ) from exc
        except GrafanaException as exc:
            raise GrafanaPushError(f"grafana: {what}: {exc.message}") from exc
        except OSError as exc:
            # niquests' connection errors derive from OSError (IOError).
            raise GrafanaPushError(f"grafana: {what}: cannot reach Grafana: {exc}") from exc

    def push_folder(self, report: PushReport) -> None:
        f = self.api.folder
        cur = self._call(f"get folder {self.folder_uid}", f.get_folder, self.folder_uid)
        if cur is None:
            self._call("create folder", f.create_folder, self.folder, uid=self.folder_uid)
            report.add("folder", self.folder_uid, "created")
        elif cur.get("title") != self.folder:
            self._call("rename folder", f.update_folder, self.folder_uid, title=self.folder,
                       overwrite=True)
            report.add("folder", self.folder_uid, "updated")
        else:
            report.add("folder", self.folder_uid, "unchanged")

    def push_datasource(self, target: InfluxTarget, report: PushReport) -> None:
        ds = self.api.datasource
        wanted = datasource_payload(target)
        uid = wanted["uid"]
        cur = self._call(f"get datasource {uid}", ds.get_datasource_by_uid, uid)
        if cur is None:
            self._call("create datasource", ds.create_datasource, wanted)
            report.add("datasource", uid, "created")
        elif "secureJsonData" in wanted or not _same_datasource(cur, wanted):
            self._call("update datasource", ds.update_datasource_by_uid, uid, wanted)
            report.add("datasource", uid, "updated")
        else:
            report.add("datasource", uid, "unchanged")

    def push_dashboards(self, dashboards: Iterable[Mapping[str, Any]], report: PushReport) -> None:
        db = self.api.dashboard
        for dash in dashboards:
            uid = str(dash["uid"])
            cur = self._call(f"get dashboard {uid}", db.get_dashboard, uid)
            if cur is not None:
                same_folder = (cur.get("meta") or {}).get("folderUid") == self.folder_uid
                if same_folder and _strip(cur.get("dashboard") or {}) == _strip(dash):
                    report.add("dashboard", uid, "unchanged")
                    continue
            body = {
                # id None + overwrite: Grafana matches on uid and replaces that dashboard.
                "dashboard": {**_strip(dash), "id": None},
                "folderUid": self.folder_uid,
                "overwrite": True,
                "message": "gateway grafana push",
            }
            self._call(f"save dashboard {uid}", db.update_dashboard, body)
            report.add("dashboard", uid, "created" if cur is None else "updated")

    def push(self, target: InfluxTarget, dashboards: Iterable[Mapping[str, Any]]) -> PushReport:
        report = PushReport()
        self.push_folder(report)
        self.push_datasource(target, report)
        self.push_dashboards(dashboards, report)
        return report


# --------------------------------------------------------------------------- CLI


def cmd_push(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("GRAFANA_TOKEN")
    user = args.user or os.environ.get("GRAFANA_USER")
    password = args.password or os.environ.get("GRAFANA_PASSWORD")
    if token and user:
        raise GrafanaPushError("give either --token or --user/--password, not both")
    dashboards = load_dashboards(Path(args.dashboards) if args.dashboards
                                 else default_dashboard_dir())
    target = InfluxTarget(
        url=args.influx_url,
        database=args.database,
        username=args.influx_user,
        password=args.influx_password or os.environ.get("INFLUX_PASSWORD"),
        token=args.influx_token or os.environ.get("INFLUX_TOKEN"),
        retention_policy=args.retention_policy,
    )
    pusher = GrafanaPusher.connect(
        args.url, token=token, user=user, password=password, timeout_s=args.timeout,
        folder=args.folder, folder_uid=args.folder_uid,
    )
    report = pusher.push(target, dashboards)
    for line in report.lines():
        print(line)
    print(
        f"{report.count('created')} created, {report.count('updated')} updated,"
        f" {report.count('unchanged')} unchanged"
    )
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``grafana push`` to the ``gateway`` command (``subparsers`` of its parser)."""
    g = subparsers.add_parser("grafana", help="put the dashboards on a Grafana")
    gsub = g.add_subparsers(dest="grafana_command", required=True)
    p = gsub.add_parser(
        "push",
        help="create or update the folder, the InfluxDB datasource and the dashboards",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("--url", default=os.environ.get("GRAFANA_URL"),
                   required="GRAFANA_URL" not in os.environ,
                   help="Grafana base URL, e.g. http://grafana:3000 (env GRAFANA_URL)")
    p.add_argument("--token", help="service account token (env GRAFANA_TOKEN)")
    p.add_argument("--user", help="Grafana user for basic auth (env GRAFANA_USER)")
    p.add_argument("--password", help="its password (env GRAFANA_PASSWORD)")
    p.add_argument("--influx-url", default="http://localhost:8086",
                   help="InfluxDB URL as Grafana reaches it (default %(default)s)")
    p.add_argument("--database", default="fsg",
                   help="InfluxDB database (1.x) or DBRP-mapped name (2.x) (default %(default)s)")
    p.add_argument("--retention-policy", default=None, help="InfluxDB retention policy")
    p.add_argument("--influx-user", default=None, help="InfluxDB 1.x user for Grafana")
    p.add_argument("--influx-password", default=None,
                   help="its password (env INFLUX_PASSWORD)")
    p.add_argument("--influx-token", default=None,
                   help="InfluxDB 2.x/3.x read token for Grafana (env INFLUX_TOKEN)")
    p.add_argument("--folder", default=DEFAULT_FOLDER, help="folder title (default %(default)s)")
    p.add_argument("--folder-uid", default=DEFAULT_FOLDER_UID,
                   help="folder uid (default %(default)s)")
    p.add_argument("--dashboards", default=None,
                   help="folder of dashboard JSON (default: the repository's dashboards/)")
    p.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout in seconds")
    p.set_defaults(func=cmd_push)
