"""A ``Document`` as PDF with reportlab (pure Python; no browser, no network, no system fonts).

Latin text uses the PDF base font Helvetica; any text with characters
outside Latin-1 (Chinese names, areas, messages) is set in a CJK font. The
first of ``CJK_FONT_FILES`` that exists (Debian's fonts-wqy-zenhei, which
the Makefile installs, or fonts-noto-cjk) is embedded (subset), so the PDF
shows Chinese on any viewer; without one, reportlab's built-in CID font
STSong-Light is named but not embedded, and the viewer must supply it.
Charts are drawn with reportlab's vector graphics from the same ``Chart``
data as the HTML's SVG.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.shapes import Drawing, Line, PolyLine, Rect, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFError, TTFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from gateway.reports.document import Chart, Document

CID_FONT = "STSong-Light"
EMBEDDED_FONT = "CJK-Embedded"
# (path, index in a collection): TrueType fonts that cover Simplified Chinese.
CJK_FONT_FILES: list[tuple[str, int]] = [
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0),
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
]
_COLOURS = [colors.HexColor("#c0392b"), colors.HexColor("#2471a3")]
_BAD = colors.HexColor("#fde8e8")
_cjk: str | None = None


def cjk_font() -> str:
    """The registered CJK font's name: an embedded TrueType font if one is installed."""
    global _cjk
    if _cjk is None:
        for path, index in CJK_FONT_FILES:
            if Path(path).is_file():
                try:
                    pdfmetrics.registerFont(TTFont(EMBEDDED_FONT, path, subfontIndex=index))
                except (TTFError, OSError):
                    continue  # unreadable or not TrueType outlines: try the next
                _cjk = EMBEDDED_FONT
                break
        else:
            pdfmetrics.registerFont(UnicodeCIDFont(CID_FONT))
            _cjk = CID_FONT
    return _cjk


def _latin1(text: str) -> bool:
    return all(ord(c) < 256 for c in text)


def _para(text: str, style: ParagraphStyle) -> Paragraph:
    if _latin1(text):
        return Paragraph(escape(text), style)
    return Paragraph(f'<font name="{cjk_font()}">{escape(text)}</font>', style)


def _chart(c: Chart, width: float, height: float = 48 * mm) -> Drawing:
    pad = 28.0
    d = Drawing(width, height)
    pts = [p for s in c.series for p in s.points]
    ys = [y for _, y in pts] or [0.0]
    lo = 0.0 if c.kind == "bar" else min(ys)
    hi = max(ys)
    if hi <= lo:
        hi = lo + 1.0
    if c.kind == "line":
        # A margin, so a flat series does not vanish into an axis.
        lo, hi = lo - (hi - lo) * 0.05, hi + (hi - lo) * 0.05
    span = max(c.end_ns - c.start_ns, 1)

    def x(t: int) -> float:
        return pad + (t - c.start_ns) / span * (width - 2 * pad)

    def y(v: float) -> float:
        return pad + (v - lo) / (hi - lo) * (height - 2 * pad)

    for a, b in c.gaps:
        shade = Rect(x(a), pad, x(b) - x(a), height - 2 * pad)
        shade.fillColor, shade.strokeColor = colors.HexColor("#dddddd"), None
        d.add(shade)
    d.add(String(pad, height - 12, f"{c.title} ({c.unit})", fontName="Helvetica", fontSize=9))
    d.add(Line(pad, pad, width - pad, pad, strokeColor=colors.grey))
    d.add(Line(pad, pad, pad, height - pad, strokeColor=colors.grey))
    d.add(String(2, height - pad - 3, f"{hi:.1f}", fontSize=6))
    d.add(String(2, pad, f"{lo:.1f}", fontSize=6))
    for h in range(0, 25, 6):
        d.add(String(x(c.start_ns + h * 3600 * 10**9) - 8, pad - 9, f"{h:02d}:00", fontSize=6))
    for i, s in enumerate(c.series):
        colour = _COLOURS[i % len(_COLOURS)]
        d.add(String(width - pad - 40, height - 12 - 10 * i, s.name, fontSize=7,
                     fillColor=colour))
        if c.kind == "bar":
            bw = (width - 2 * pad) * 3600e9 / span * 0.8
            for t, v in s.points:
                bar = Rect(x(t), pad, bw, y(v) - pad)
                bar.fillColor, bar.strokeColor = colour, None
                d.add(bar)
        else:
            for seg in c.segments(s):
                flat: list[float] = []
                for t, v in seg:
                    flat += [x(t), y(v)]
                d.add(PolyLine(flat, strokeColor=colour, strokeWidth=1.4))
    return d


def render_pdf(doc: Document) -> bytes:
    """The document as PDF bytes: head lines, charts, then every table (highlighted rows red)."""
    cjk_font()
    buf = io.BytesIO()
    page = landscape(A4)
    pdf = SimpleDocTemplate(buf, pagesize=page, leftMargin=12 * mm, rightMargin=12 * mm,
                            topMargin=12 * mm, bottomMargin=12 * mm, title=doc.title)
    body = ParagraphStyle("body", fontName="Helvetica", fontSize=9, leading=11.5)
    title = ParagraphStyle("title", parent=body, fontName="Helvetica-Bold", fontSize=14,
                           leading=18)
    h3 = ParagraphStyle("h3", parent=body, fontName="Helvetica-Bold", fontSize=10.5, leading=13)
    cell = ParagraphStyle("cell", parent=body, fontSize=7, leading=8.5)
    head = ParagraphStyle("head", parent=cell, fontName="Helvetica-Bold")
    warn = ParagraphStyle("warn", parent=body, textColor=colors.HexColor("#a00000"),
                          fontName="Helvetica-Bold")
    story: list[Any] = [_para(doc.title, title)]
    for i, line in enumerate(doc.lines):
        story.append(_para(line, warn if i == 0 and not doc.complete else body))
    width = page[0] - 24 * mm
    for i, t in enumerate(doc.tables):
        if i == doc.tables_before_charts:
            for c in doc.charts:
                story += [Spacer(1, 3 * mm), _chart(c, width)]
        story += [Spacer(1, 4 * mm), _para(t.title.capitalize(), h3)]
        if not t.rows:
            story.append(_para("(none)", body))
            continue
        data = [[_para(h, head) for h in t.header]]
        data += [[_para(v, cell) for v in r] for r in t.rows]
        # Columns as wide as their text wants (long notes and messages wider), within the page.
        wants = [min(max(len(r[i]) for r in [t.header, *t.rows]), 60) + 4
                 for i in range(len(t.header))]
        table = Table(data, repeatRows=1, hAlign="LEFT",
                      colWidths=[width * w / sum(wants) for w in wants])
        style: list[Any] = [("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                 ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                 ("VALIGN", (0, 0), (-1, -1), "TOP")]
        style += [("BACKGROUND", (0, i + 1), (-1, i + 1), _BAD)
                  for i in range(len(t.rows)) if t.is_bad(i)]
        table.setStyle(TableStyle(style))
        story.append(table)
    pdf.build(story)
    return buf.getvalue()


__all__ = ["CJK_FONT_FILES", "cjk_font", "render_pdf"]
