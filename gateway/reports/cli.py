"""``gateway report heating|safety``: build a daily report for one local day of a site.

``build_report`` is what the command and the scheduler call: it reads the
day from InfluxDB (InfluxQL over the 1.x HTTP API, the site's influx sink by
default), builds the document and renders it as text, CSV, HTML or PDF
(bytes in every case).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import Any

from gateway.config import Site
from gateway.loader import load_site
from gateway.patrol.influxql import (
    Query,
    ReportError,
    influx_query,
    site_influx,
)
from gateway.patrol_cli import _date
from gateway.reports.config import Format, ReportKind
from gateway.reports.day import read_day
from gateway.reports.document import Document
from gateway.reports.render import render_csv, render_html, render_text

FORMATS: tuple[Format, ...] = ("text", "csv", "html", "pdf")


def build_document(kind: ReportKind, query: Query, site: Site, day: date) -> Document:
    data = read_day(query, site, day)
    if kind == "heating":
        from gateway.reports.heating import collect_heating, heating_document

        return heating_document(collect_heating(data))
    from gateway.reports.safety import collect_safety, safety_document

    return safety_document(collect_safety(query, site, data))


def render(doc: Document, fmt: Format) -> bytes:
    if fmt == "text":
        return render_text(doc).encode()
    if fmt == "csv":
        return render_csv(doc).encode()
    if fmt == "html":
        return render_html(doc).encode()
    if fmt == "pdf":
        from gateway.reports.pdf import render_pdf

        return render_pdf(doc)
    raise ReportError(f"unknown report format {fmt!r} ({', '.join(FORMATS)})")


def build_report(kind: ReportKind, query: Query, site: Site, day: date, fmt: Format) -> bytes:
    return render(build_document(kind, query, site, day), fmt)


def site_query(site: Site) -> Query:
    url, database, username, password = site_influx(site)
    if not url or not database:
        raise ReportError(f"site {site.config.site!r} has no influx sink to read the report from")
    return influx_query(url, database, username=username, password=password)


def register_cli(subparsers: Any) -> None:
    """Add ``report heating`` and ``report safety`` under the ``report`` command."""
    report = subparsers.choices["report"]
    sub = next(a for a in report._actions if isinstance(a, argparse._SubParsersAction))
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
