"""Run reports: every section in the HTML, every user string escaped, nothing external; the PDF
(Qt's writer) renders to non-blank pages; the comparison lists every run; the command writes the files."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from html import escape
from pathlib import Path

import numpy as np
import pytest
from coretrain import train
from PIL import Image
from tinydata import make_dataset

from cnnstudio.cli import main
from cnnstudio.core.report import RANDOM_WEIGHTS, SECTIONS, comparison_html, run_report_html

EVIL = "<img src=x onerror=alert(1)>"
EVIL_FILE = f"red/{EVIL}.png"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny trained run whose test predictions hold a confidently misclassified file with an HTML name."""
    base = tmp_path_factory.mktemp("report")
    data = make_dataset(base / "data", per_class=8, size=20)
    (data / "green" / "empty <b>.png").write_bytes(b"")  # a problem the scan reports, with markup in its name
    run = base / "run"
    train(data, run, epochs=2)
    shutil.copy(data / "red" / "red_000.png", data / EVIL_FILE)
    pred = run / "predictions.csv"
    with open(pred, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]  # path, true, predicted, confidence, correct, p_blue, p_green, p_red
    assert header[5:] == ["p_blue", "p_green", "p_red"]
    rows.insert(1, [EVIL_FILE, "red", "blue", "0.990000", "0", "0.990000", "0.005000", "0.005000"])
    with open(pred, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return run


def _assert_safe(html: str):
    assert EVIL not in html and "<img src=x" not in html
    assert "<script" not in html.lower()
    assert not re.search(r"https?://", html)
    assert not re.search(r"""src=["'](?!data:)""", html)  # every image is inside the file


def test_run_report_has_every_section_and_escapes_names(run_dir):
    html = run_report_html(run_dir)
    for sid, _title in SECTIONS:
        assert f'id="{sid}"' in html, sid
    _assert_safe(html)
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in html  # shown, escaped, among the mistakes
    mistakes = html[html.index('id="misclassified"'):html.index('id="calibration"')]
    captions = re.findall(r"<small>(.*?)</small>", mistakes)
    assert captions[0] == escape(EVIL_FILE)  # the most confident mistake first
    assert "data:image/jpeg;base64," in mistakes
    assert RANDOM_WEIGHTS in html
    assert html.count("<svg") >= 3  # loss, accuracy, reliability
    assert "Expected calibration error" in html and "tensorflow" in html


def test_fine_tuning_phase_is_marked_on_the_curves(run_dir, tmp_path):
    run = tmp_path / "ft"
    shutil.copytree(run_dir, run)
    hist = run / "history.csv"
    with open(hist, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    rows[-1]["phase"] = "finetune"
    with open(hist, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    html = run_report_html(run)
    assert "stroke-dasharray=\"6,4\"" in html and "fine-tuning" in html


def _pdf_pages_not_blank(pdf: Path, tmp_path: Path) -> int:
    if shutil.which("pdftoppm") is None:
        if os.environ.get("CI"):  # .ci/run installs poppler-utils: there a missing pdftoppm is a failure
            pytest.fail("pdftoppm is missing although .ci/run installs poppler-utils")
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    prefix = tmp_path / f"{pdf.stem}-page"
    subprocess.run(["pdftoppm", "-png", "-r", "40", str(pdf), str(prefix)], check=True, capture_output=True)
    pages = sorted(tmp_path.glob(f"{pdf.stem}-page*.png"))
    assert pages
    for page in pages:
        arr = np.asarray(Image.open(page).convert("L"))
        assert arr.min() < 128 < arr.max(), page  # text on white, not one colour
    return len(pages)


def test_cli_writes_html_and_pdf_into_the_run(run_dir, tmp_path, capsys):
    assert main(["report", str(run_dir), "--pdf"]) == 0
    out = capsys.readouterr().out.split()
    html, pdf = run_dir / "report.html", run_dir / "report.pdf"
    assert out == [str(html), str(pdf)]
    _assert_safe(html.read_text(encoding="utf-8"))
    assert pdf.read_bytes().startswith(b"%PDF")
    assert _pdf_pages_not_blank(pdf, tmp_path) >= 3


def _pages_text(pdf: Path) -> list[str]:
    if shutil.which("pdftotext") is None:
        if os.environ.get("CI"):
            pytest.fail("pdftotext is missing although .ci/run installs poppler-utils")
        pytest.skip("pdftotext (poppler-utils) is not installed")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True).stdout
    return text.split("\f")[:-1] if text.endswith("\f") else text.split("\f")


def test_the_pdf_keeps_headings_with_what_they_introduce_and_short_tables_whole(tmp_path, monkeypatch):
    """Whatever the text above them, a heading and its intro line are never left at the foot of
    a page, and a short table is never cut in two; the page numbers say "k / n"."""
    from cnnstudio.gui import pdf

    made = []
    keep = pdf._keep_with_next
    monkeypatch.setattr(pdf, "_keep_with_next", lambda doc, height: made.append(keep(doc, height)) or made[-1])
    table = "<table border='1'>" + "".join(f"<tr><td>row-{i}</td><td>{i}</td></tr>" for i in range(6)) + "</table>"
    for n in range(30, 80, 3):  # the heading lands everywhere on the page, the foot included
        filler = "".join(f"<p>filler line {i}</p>" for i in range(n))
        out = pdf.html_to_pdf(f"{filler}<h2>The heading</h2><p>What follows:</p>{table}<p>after</p>", {},
                              tmp_path / f"{n}.pdf")
        pages = _pages_text(out)
        where = {word: [i for i, page in enumerate(pages) if word in page] for word in
                 ("The heading", "What follows:", "row-0", "row-5")}
        assert all(len(found) == 1 for found in where.values()), (n, where)
        assert len({found[0] for found in where.values()}) == 1, (n, where)  # all on one page
        assert all(re.search(rf"\b{k + 1} ?/ ?{len(pages)}\b", page) for k, page in enumerate(pages))
    assert any(made), "no layout put the heading at a page's foot: the test checked nothing"
    assert not all(made)


def test_comparison_lists_both_runs(run_dir, tmp_path, capsys):
    other = tmp_path / "second-run"
    shutil.copytree(run_dir, other)
    html = comparison_html([run_dir, other])
    assert run_dir.name in html and "second-run" in html
    assert 'id="runs"' in html and 'id="curves"' in html and html.count("<svg") == 2
    _assert_safe(html)
    out = tmp_path / "cmp"
    assert main(["report", str(run_dir), str(other), "--out", str(out), "--pdf"]) == 0
    assert (out / "comparison.html").exists()
    _pdf_pages_not_blank(out / "comparison.pdf", tmp_path)


def test_report_errors_are_one_line(tmp_path, run_dir, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 1
    assert main(["report", str(run_dir), str(run_dir)]) == 1  # several runs need --out
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("cnnstudio report: error:") for line in err)


def test_the_dataset_section_lists_what_the_scan_found(run_dir):
    from cnnstudio.core.report import run_report_html

    html = run_report_html(run_dir)
    section = html[html.index('id="dataset"'):html.index('id="architecture"')]
    assert "The dataset scan found" in section and "empty file" in section
    assert "green/empty &lt;b&gt;.png" in section and "empty <b>" not in html


def test_a_window_can_open_after_a_pdf_was_written_in_the_same_process(tmp_path):
    """The PDF writer's Qt application must serve widgets too: a bare QGuiApplication made any
    later window (the same process, e.g. a test run) abort on its first widget."""
    code = (
        "import sys\n"
        "from cnnstudio.gui.pdf import html_to_pdf\n"
        "html_to_pdf('<h1>Report</h1><p>text</p>', {}, sys.argv[1])\n"
        "from PySide6.QtWidgets import QApplication, QLabel\n"
        "label = QLabel('a widget after the report')\n"
        "print(type(QApplication.instance()).__name__, label.text())\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.pdf")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-1500:]
    assert out.stdout.strip() == "QApplication a widget after the report"
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")


def test_a_long_legend_entry_is_written_whole_and_the_reliability_plot_is_square():
    """A legend entry is never cut ("accuracy at mean c…"); the reliability plot's axes are as long."""
    import re

    from cnnstudio.core.report import line_chart_svg

    label = "accuracy at mean confidence per bin"
    svg = line_chart_svg([(label, "#ff7f0e", False, [(0.2, 0.3), (0.8, 0.7)])], title="Reliability diagram",
                         ylabel="accuracy", xlabel="confidence", y_range=(0.0, 1.0), diagonal=True,
                         width=520, height=370)
    assert "…" not in svg
    texts = re.findall(r'<text x="([\d.]+)" y="[^"]*" fill="#222">([^<]*)</text>', svg)
    legend = [text for x, text in texts if float(x) > 260]  # right of the plot, where the legend is
    assert " ".join(legend) == label
    frame = re.search(r'<rect x="(\d+)" y="(\d+)" width="(\d+)" height="(\d+)" fill="none"', svg)
    assert frame.group(3) == frame.group(4)  # the plotting area is square
