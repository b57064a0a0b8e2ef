"""A ``Document`` as text, CSV or HTML with inline SVG charts (no JavaScript, no build step).

Highlighted rows (late acknowledgements, gaps, excursions) are marked ``!``
in text, carry a ``flag`` column in CSV and a red background in HTML. An
incomplete report says INCOMPLETE in its first line in every format. PDF is
``gateway.reports.pdf``.
"""

from __future__ import annotations

import csv
import html
import io

from gateway.reports.document import Chart, Document

_COLOURS = ["#c0392b", "#2471a3", "#27ae60", "#8e44ad"]
_W, _H, _PAD = 720, 220, 40


def render_text(doc: Document) -> str:
    out = [doc.title, *doc.lines, ""]
    for t in doc.tables:
        out.append(t.title.upper())
        if not t.rows:
            out += ["  (none)", ""]
            continue
        widths = [max(len(h), *(len(r[i]) for r in t.rows)) for i, h in enumerate(t.header)]
        out.append(("  " + "  ".join(h.ljust(w) for h, w in zip(t.header, widths, strict=True)))
                   .rstrip())
        out.append("  " + "  ".join("-" * w for w in widths))
        for i, r in enumerate(t.rows):
            mark = "! " if t.is_bad(i) else "  "
            cells = "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
            out.append((mark + cells).rstrip())
        out.append("")
    return "\n".join(out)


def render_csv(doc: Document) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["# " + doc.title])
    for line in doc.lines:
        w.writerow(["# " + line])
    for t in doc.tables:
        w.writerow([])
        w.writerow(["section", *t.header, "flag"])
        for i, r in enumerate(t.rows):
            w.writerow([t.title, *r, "!" if t.is_bad(i) else ""])
    return buf.getvalue()


def svg_chart(chart: Chart) -> str:
    """One chart as an inline SVG: lines (per series) or bars, time of day on the x axis."""
    pts = [p for s in chart.series for p in s.points]
    span = max(chart.end_ns - chart.start_ns, 1)
    ys = [y for _, y in pts] or [0.0]
    lo = 0.0 if chart.kind == "bar" else min(ys)
    hi = max(ys)
    if hi <= lo:
        hi = lo + 1.0
    if chart.kind == "line":
        # A margin, so a flat series does not vanish into an axis.
        lo, hi = lo - (hi - lo) * 0.05, hi + (hi - lo) * 0.05

    def x(t: int) -> float:
        return _PAD + (t - chart.start_ns) / span * (_W - 2 * _PAD)

    def y(v: float) -> float:
        return _H - _PAD + (lo - v) / (hi - lo) * (_H - 2 * _PAD)

    e = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}"'
        f' viewBox="0 0 {_W} {_H}" role="img" aria-label="{e(chart.title)}">',
        f'<text x="{_PAD}" y="16" font-size="13">{e(chart.title)} ({e(chart.unit)})</text>',
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="#555"/>',
        f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{_H - _PAD}" stroke="#555"/>',
        f'<text x="2" y="{_PAD + 4}" font-size="10">{hi:.1f}</text>',
        f'<text x="2" y="{_H - _PAD}" font-size="10">{lo:.1f}</text>',
    ]
    for a, b in chart.gaps:
        parts.append(f'<rect class="gap" x="{x(a):.1f}" y="{_PAD}" width="{x(b) - x(a):.1f}"'
                     f' height="{_H - 2 * _PAD}" fill="#ddd"><title>no data</title></rect>')
    for h in range(0, 25, 6):
        parts.append(f'<text x="{x(chart.start_ns + h * 3600 * 10**9) - 8:.1f}"'
                     f' y="{_H - _PAD + 14}" font-size="10">{h:02d}:00</text>')
    for i, s in enumerate(chart.series):
        colour = _COLOURS[i % len(_COLOURS)]
        if chart.kind == "bar":
            bw = (_W - 2 * _PAD) * 3600e9 / span * 0.8
            for t, v in s.points:
                parts.append(f'<rect class="bar" x="{x(t):.1f}" y="{y(v):.1f}" width="{bw:.1f}"'
                             f' height="{max(y(lo) - y(v), 0):.1f}" fill="{colour}"/>')
        else:
            for seg in chart.segments(s):
                path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in seg)
                parts.append(f'<polyline class="series" data-name="{e(s.name)}" fill="none"'
                             f' stroke="{colour}" stroke-width="1.2" points="{path}"/>')
        parts.append(f'<text x="{_W - _PAD - 60}" y="{16 + 14 * i}" font-size="11"'
                     f' fill="{colour}">{e(s.name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def render_html(doc: Document) -> str:
    e = html.escape
    head_cls = "" if doc.complete else ' class="incomplete"'
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(doc.title)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}"
        "table{border-collapse:collapse;margin-bottom:1.5em}"
        "th,td{border:1px solid #bbb;padding:.25em .5em;text-align:left}"
        "th{background:#eee}tr.bad td{background:#fde8e8}"
        "p.incomplete{color:#a00;font-weight:bold}</style>",
        "</head><body>",
        f"<h1>{e(doc.title)}</h1>",
    ]
    for i, line in enumerate(doc.lines):
        parts.append(f"<p{head_cls if i == 0 else ''}>{e(line)}</p>")
    for i, t in enumerate(doc.tables):
        if i == doc.tables_before_charts:
            parts += [f'<figure class="chart">{svg_chart(c)}</figure>' for c in doc.charts]
        parts.append(f"<h2>{e(t.title.capitalize())}</h2>")
        if not t.rows:
            parts.append("<p>(none)</p>")
            continue
        parts.append(f'<table id="{e(t.title.replace(" ", "-"))}"><thead><tr>'
                     + "".join(f"<th>{e(h)}</th>" for h in t.header) + "</tr></thead><tbody>")
        for i, r in enumerate(t.rows):
            cls = ' class="bad"' if t.is_bad(i) else ""
            parts.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>")
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


__all__ = ["render_csv", "render_html", "render_text", "svg_chart"]
