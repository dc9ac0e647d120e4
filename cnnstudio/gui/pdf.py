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

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMarginsF, QRectF, QSizeF, Qt, QUrl
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetricsF,
    QGuiApplication,
    QImage,
    QPageLayout,
    QPageSize,
    QPainter,
    QPdfWriter,
    QTextBlockFormat,
    QTextCursor,
    QTextDocument,
    QTextFormat,
)
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QApplication

from cnnstudio.core.errors import WriteFailed
from cnnstudio.core.io.atomic import atomic_write_bytes, pdf_problem
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
    """Write ``html`` (Qt's rich-text subset) with its image ``resources`` to a PDF, atomically:
    A4 pages, page numbers, and no heading (or a line introducing a table) left alone at the
    foot of a page."""
    _ensure_app()
    doc = QTextDocument()
    doc.setDocumentMargin(0)
    for name, (fmt, data) in resources.items():
        img = _svg_image(data) if fmt == "svg" else QImage.fromData(QByteArray(data))
        doc.addResource(QTextDocument.ResourceType.ImageResource, QUrl(name), img)
    doc.setHtml(html)
    out_path = Path(out_path)
    # Qt's writer drops its write errors (a full disk gave an 8 KB file without its end), so the
    # PDF is made in memory, checked whole, and written by the atomic writer, whose errors say why.
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = QPdfWriter(buffer)
    writer.setTitle(title)
    writer.setCreator("CNN Studio")
    writer.setResolution(300)
    writer.setPageLayout(QPageLayout(QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Portrait,
                                     QMarginsF(15, 15, 15, 15), QPageLayout.Unit.Millimeter))
    _print(doc, writer)
    del writer  # finishes the PDF
    buffer.close()
    data = bytes(buffer.data())
    problem = pdf_problem(data)
    if problem:
        raise WriteFailed(out_path, f"Qt's PDF writer did not finish the file ({problem})")
    atomic_write_bytes(out_path, data, check=_ends_the_pdf)
    return out_path


def _ends_the_pdf(path: Path) -> str | None:
    """The written file's last bytes, read back: still the end of a PDF."""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 64))
        return pdf_problem(f.read())


def _print(doc: QTextDocument, writer: QPdfWriter) -> None:
    """Lay ``doc`` out in the writer's own units and paint it page by page, a number at each foot."""
    painter = QPainter(writer)
    try:
        doc.documentLayout().setPaintDevice(writer)
        font = doc.defaultFont()
        footer = QFontMetricsF(font, writer).height() * 2
        width, height = writer.width(), writer.height() - footer
        doc.setPageSize(QSizeF(width, height))
        _keep_with_next(doc, height)
        pages = doc.pageCount()
        painter.setFont(QFont(font, writer))
        for page in range(pages):
            if page:
                writer.newPage()
            painter.save()
            painter.translate(0, -page * height)
            doc.drawContents(painter, QRectF(0, page * height, width, height))
            painter.restore()
            painter.drawText(QRectF(0, height, width, footer),
                             int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignBottom), f"{page + 1} / {pages}")
    finally:
        painter.end()


def _keep_with_next(doc: QTextDocument, page_height: float) -> int:
    """Move to the next page what would otherwise be cut badly:

    * a heading, or a paragraph ending in ":", left at the foot of a page without what it
      introduces (the next table or figure within a few blocks, else the next block);
    * a short table (under :data:`SHORT_TABLE` of a page) cut in two, with the heading and
      paragraph introducing it.

    Blocks are visited in order, so a break moves only what follows it. Returns the breaks made.
    """
    layout = doc.documentLayout()
    layout.documentSize()  # lays the whole document out: Qt lays out large ones lazily otherwise

    def start(block) -> float:
        """Where the block's first line is: a line that does not fit is moved down to the next
        page inside its block, so the block's own top can still be on the page before."""
        lines = block.layout()
        return layout.blockBoundingRect(block).top() + (lines.lineAt(0).y() if lines.lineCount() else 0.0)

    def page_of(block) -> int:
        return int(start(block) // page_height)

    def at_top_of_page(block) -> bool:  # moving it would gain nothing
        return start(block) - page_of(block) * page_height < page_height * 0.02

    def heading(block) -> bool:
        return block.blockFormat().headingLevel() > 0

    def table_of(block):
        return QTextCursor(block).currentTable()

    def keeps(block) -> bool:
        return heading(block) or (block.text().rstrip().endswith(":") and table_of(block) is None)

    def content(block) -> bool:  # a table's cell, or a figure
        return table_of(block) is not None or "\ufffc" in block.text()

    def introduced(block):
        probe = block.next()
        for _ in range(LOOK_AHEAD):
            if not probe.isValid() or heading(probe):
                break
            if content(probe):
                return probe
            probe = probe.next()
        return block.next()

    def lead(block):
        """The first of the headings and paragraphs introducing ``block`` on its page."""
        first = block
        probe = block.previous()
        for _ in range(LOOK_AHEAD):
            if not probe.isValid() or table_of(probe) is not None or page_of(probe) != page_of(block):
                break
            if keeps(probe):
                first = probe
            elif not heading(probe.previous()):
                break  # an ordinary paragraph: nothing above it belongs to this block
            probe = probe.previous()
        return first

    def short_table_cut(block) -> bool:
        table = table_of(block)
        if table is None or table.cellAt(0, 0).firstCursorPosition().block() != block:
            return False  # only a table's first block stands for the table
        box = layout.frameBoundingRect(table)
        return (box.height() < SHORT_TABLE * page_height
                and int(box.top() // page_height) != int((box.bottom() - 1) // page_height))

    def break_before(block) -> None:
        table = table_of(block)
        if table is not None:
            fmt = table.format()
            fmt.setPageBreakPolicy(QTextFormat.PageBreakFlag.PageBreak_AlwaysBefore)
            table.setFormat(fmt)
        else:
            fmt = QTextBlockFormat()
            fmt.setPageBreakPolicy(QTextFormat.PageBreakFlag.PageBreak_AlwaysBefore)
            QTextCursor(block).mergeBlockFormat(fmt)
        layout.documentSize()  # and again below the break

    breaks = 0
    block = doc.firstBlock()
    while block.isValid():
        if keeps(block):
            following = introduced(block)
            cut = following.isValid() and page_of(following) > page_of(block)
        else:
            cut = short_table_cut(block)
        if cut:
            target = lead(block)
            if not at_top_of_page(target):
                break_before(target)
                breaks += 1
        block = block.next()
    return breaks


SHORT_TABLE = 0.4  # of a page: a table this short moves whole to the next page rather than be cut
LOOK_AHEAD = 3  # blocks between a heading and the table or figure it introduces


def write_run_pdf(run_dir, out_path) -> Path:
    html, resources = run_report_parts(run_dir, inline=False)
    return html_to_pdf(html, resources, out_path, title=f"Run report: {Path(run_dir).name}")


def write_comparison_pdf(run_dirs, out_path) -> Path:
    html, resources = comparison_parts(run_dirs, inline=False)
    return html_to_pdf(html, resources, out_path, title="Comparison of runs")
