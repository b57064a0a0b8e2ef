"""Rendering of report documents: no line across a gap, Chinese text in the PDF."""

from __future__ import annotations

import subprocess
from pathlib import Path

from gateway.reports.document import Chart, Document, Series, Table
from gateway.reports.pdf import CJK_FONT_FILES, render_pdf
from gateway.reports.render import render_csv, render_text, svg_chart

S = 1_000_000_000


def test_a_chart_line_breaks_at_a_gap_and_the_gap_is_shaded() -> None:
    pts = [(t * 60 * S, 1.0) for t in (0, 1, 2, 10, 11)]
    chart = Chart("t", "°C", "line", 0, 12 * 60 * S, [Series("s", pts)],
                  gaps=[(2 * 60 * S, 10 * 60 * S)])
    assert [len(seg) for seg in chart.segments(chart.series[0])] == [3, 2]
    svg = svg_chart(chart)
    assert svg.count("<polyline") == 2 and svg.count('class="gap"') == 1
    no_gap = Chart("t", "°C", "line", 0, 12 * 60 * S, [Series("s", pts)])
    assert svg_chart(no_gap).count("<polyline") == 1


def test_incomplete_and_flagged_rows_show_in_text_and_csv() -> None:
    doc = Document("x", "UTC", ["INCOMPLETE: data missing"],
                   [Table("t", ["a", "b"], [["1", "2"], ["3", "4"]], [False, True])],
                   complete=False)
    text = render_text(doc)
    assert "! 3  4" in text and "  1  2" in text
    assert render_csv(doc).splitlines()[-1] == "t,3,4,!"


def _poppler(*args: str, data: bytes) -> str:
    return subprocess.run([*args], input=data, capture_output=True, check=True,
                          timeout=60).stdout.decode(errors="replace")


def test_chinese_text_survives_in_the_pdf(tmp_path: Path) -> None:
    """Embedded CJK font (fonts-wqy-zenhei, installed by make): text extracts and renders."""
    assert any(Path(p).is_file() for p, _ in CJK_FONT_FILES), "install fonts-wqy-zenhei"
    pdf = render_pdf(Document("一号锅炉房 日报", "Asia/Shanghai", ["压非保民: 住宅最后"],
                              [Table("区域", ["名称"], [["住宅 residential"]])]))
    text = _poppler("pdftotext", "-", "-", data=pdf)
    assert "一号锅炉房 日报" in text and "压非保民" in text and "住宅 residential" in text
    fonts = _poppler("pdffonts", "-", data=pdf)
    cjk = [line.split() for line in fonts.splitlines() if "ZenHei" in line or "CJK" in line]
    assert cjk and cjk[0][-5] == "yes"  # the "emb" column: any viewer shows it
    # Rendered, the Chinese title is ink on the page (not blank).
    (tmp_path / "cjk.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "50", "-png", "-singlefile", "-x", "0", "-y", "0",
                    "-W", "300", "-H", "60", str(tmp_path / "cjk.pdf"), str(tmp_path / "top")],
                   check=True, timeout=60)
    from PIL import Image

    with Image.open(tmp_path / "top.png") as im:
        dark = sum(1 for v in im.convert("L").tobytes() if v < 128)
    assert dark > 100
