"""``gateway report patrol``: the night patrol report (gateway.patrol.report) as a command."""

from __future__ import annotations

import argparse
import sys
import weakref
from datetime import date
from typing import Any

from gateway.loader import load_site
from gateway.patrol.config import PatrolConfig, resolve_patrol
from gateway.patrol.influxql import ReportError, influx_query, site_influx
from gateway.patrol.report import build_patrol_report

__all__ = ["cmd_report_patrol", "register_cli"]


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


# The ``report`` command's subcommands, by its parser: argparse has no public way
# to find a parser's subcommands again, and each report module adds its own.
_REPORT_COMMANDS: weakref.WeakKeyDictionary[argparse.ArgumentParser, Any] = (
    weakref.WeakKeyDictionary()
)


def report_commands(subparsers: Any) -> Any:
    """The subcommands of ``gateway report`` (creating ``report`` if needed)."""
    report = subparsers.choices.get("report")
    if report is None:
        report = subparsers.add_parser("report", help="reports read back from InfluxDB")
        _REPORT_COMMANDS[report] = report.add_subparsers(dest="report_command", required=True)
    return _REPORT_COMMANDS[report]


def register_cli(subparsers: Any) -> None:
    """Add ``report patrol`` to the ``gateway`` command (creating ``report`` if needed)."""
    sub = report_commands(subparsers)
    p = sub.add_parser(
        "patrol",
        help="the night's patrol rounds, findings and per-checkpoint exception table",
        description="Read one night (evening of DATE to the next morning) from InfluxDB.",
    )
    p.add_argument("--date", required=True, type=_date, help="the evening the night starts")
    p.add_argument("--format", choices=["text", "csv", "html"], default="text")
    p.add_argument("--site", help="site file: patrol config, site name, InfluxDB settings")
    p.add_argument("--influx-url", help="InfluxDB 1.x URL (default: the site's influx sink)")
    p.add_argument("--database", help="InfluxDB database (default: the site's influx sink)")
    p.add_argument("--username")
    p.add_argument("--password")
    p.add_argument("--tz", help="time zone (default: the patrol config's, else UTC)")
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_report_patrol)


def cmd_report_patrol(args: argparse.Namespace) -> int:
    config: PatrolConfig | None = None
    site_name: str | None = None
    url, database = args.influx_url, args.database
    username, password = args.username, args.password
    if args.site:
        site = load_site(args.site)
        site_name = site.config.site
        config = resolve_patrol(site.config.patrol, site.path)
        s_url, s_db, s_user, s_pw = site_influx(site)
        url, database = url or s_url, database or s_db
        username, password = username or s_user, password or s_pw
    if not url or not database:
        raise ReportError("give --influx-url and --database, or a --site with an influx sink")
    text = build_patrol_report(
        influx_query(url, database, username=username, password=password),
        args.date,
        fmt=args.format,
        config=config,
        tz=args.tz,
        site=site_name,
    )
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0
