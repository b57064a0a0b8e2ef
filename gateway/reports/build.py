"""Build a daily report: read the day, make the document, render it.

``build_report`` is what ``gateway report`` and the scheduler call: it reads
the day from InfluxDB (InfluxQL over the 1.x HTTP API, the site's influx sink
by default), builds the document and renders it as text, CSV, HTML or PDF
(bytes in every case).
"""

from __future__ import annotations

from datetime import date

from gateway.config import Site
from gateway.patrol.influxql import (
    Query,
    ReportError,
    influx_query,
    site_influx,
)
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
