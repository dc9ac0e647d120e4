"""Reports as PDF with Qt's own PDF writer (``QTextDocument`` + ``QPdfWriter``), no other service.

The HTML comes from :mod:`cnnstudio.core.report` with its images as named resources: Qt's rich
text shows neither inline SVG nor data addresses, so each SVG chart is drawn into a ``QImage``
with ``QSvgRenderer`` (twice the size, for print) and every image is registered with
``QTextDocument.addResource``. Works headless (``QT_QPA_PLATFORM=offscreen``): a
``QApplication`` is created when none exists; not a bare ``QGuiApplication``, which would
outlive the report and make any later window in the same process abort on its first widget.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QMarginsF, QUrl
from PySide6.QtGui import (
    QColor,
    QGuiApplication,
    QImage,
    QPageLayout,
    QPageSize,
    QPainter,
    QPdfWriter,
    QTextDocument,
)
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QApplication

from cnnstudio.core.atomic import atomic_path
from cnnstudio.core.report import comparison_parts, run_report_parts

_app = None
SVG_SCALE = 2


def _ensure_app():
    global _app
    app = QGuiApplication.instance()
    if app is None:
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        _app = app = QApplication(["cnnstudio-report"])
    return app


def _svg_image(data: bytes) -> QImage:
    renderer = QSvgRenderer(QByteArray(data))
    size = renderer.defaultSize()
    img = QImage(size.width() * SVG_SCALE, size.height() * SVG_SCALE, QImage.Format.Format_ARGB32)
    img.fill(QColor("white"))
    painter = QPainter(img)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return img


def html_to_pdf(html: str, resources: dict[str, tuple[str, bytes]], out_path, title: str = "") -> Path:
    """Write ``html`` (Qt's rich-text subset) with its image ``resources`` to a PDF, atomically."""
    _ensure_app()
    doc = QTextDocument()
    doc.setDocumentMargin(0)
    for name, (fmt, data) in resources.items():
        img = _svg_image(data) if fmt == "svg" else QImage.fromData(QByteArray(data))
        doc.addResource(QTextDocument.ResourceType.ImageResource, QUrl(name), img)
    doc.setHtml(html)
    out_path = Path(out_path)
    with atomic_path(out_path, suffix=".pdf") as tmp:
        writer = QPdfWriter(str(tmp))
        writer.setTitle(title)
        writer.setCreator("CNN Studio")
        writer.setResolution(300)
        writer.setPageLayout(QPageLayout(QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Portrait,
                                         QMarginsF(15, 15, 15, 15), QPageLayout.Unit.Millimeter))
        doc.print_(writer)
        del writer  # finishes the file
    return out_path


def write_run_pdf(run_dir, out_path) -> Path:
    html, resources = run_report_parts(run_dir, inline=False)
    return html_to_pdf(html, resources, out_path, title=f"Run report: {Path(run_dir).name}")


def write_comparison_pdf(run_dirs, out_path) -> Path:
    html, resources = comparison_parts(run_dirs, inline=False)
    return html_to_pdf(html, resources, out_path, title="Comparison of runs")
