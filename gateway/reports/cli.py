"""``gateway report heating|safety``: build a daily report for one local day of a site.

The report itself is built by gateway/reports/build.py (shared with the scheduler).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.loader import load_site
from gateway.patrol_cli import _date, report_commands
from gateway.reports.build import FORMATS, build_document, build_report, render, site_query

__all__ = ["FORMATS", "build_document", "build_report", "register_cli", "render", "site_query"]


def register_cli(subparsers: Any) -> None:
    """Add ``report heating`` and ``report safety`` under the ``report`` command."""
    sub = report_commands(subparsers)
    for kind, text in (
        ("heating", "the heating-season daily report: boilers, networks, gas, alarms"),
        ("safety", "the daily safety log: patrols, leakage, cold rooms, outages, incidents"),
    ):
        p = sub.add_parser(kind, help=text, description=text + " (one local day)")
        p.add_argument("--date", required=True, type=_date, help="the local day (YYYY-MM-DD)")
        p.add_argument("--site", required=True, help="site file (devices, time zone, InfluxDB)")
        p.add_argument("--format", choices=FORMATS, default="text")
        p.add_argument("--output", "-o", help="write to this file instead of stdout")
        p.set_defaults(func=cmd_report, report_kind=kind)


def cmd_report(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    data = build_report(args.report_kind, site_query(site), site, args.date, args.format)
    if args.output:
        with open(args.output, "wb") as f:
            f.write(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


__all__ = ["FORMATS", "build_document", "build_report", "register_cli", "render", "site_query"]
