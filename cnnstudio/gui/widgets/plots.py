"""Drawing pieces shared by the panels: live curves, the confusion-matrix heatmap, thumbnails.

Live curves follow pyqtgraph's ``scrollingPlots`` example: points go into preallocated NumPy
arrays and the curve is redrawn with one ``setData`` on a view of them, so a long run never
reallocates per point and never rebuilds the plot.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFont, QImage, QImageReader, QPalette
from PySide6.QtWidgets import QGraphicsItem, QWidget

TRAIN_COLOUR = "#1f77b4"
VAL_COLOUR = "#ff7f0e"


def style_plot(plot: pg.PlotWidget, palette: QPalette | None = None) -> None:
    """Colour a plot from the widget palette, so it follows the system's light or dark theme."""
    palette = palette or plot.palette()
    plot.setBackground(palette.color(QPalette.ColorRole.Base))
    text = palette.color(QPalette.ColorRole.Text)
    item = plot.getPlotItem()
    for name in ("left", "bottom", "top", "right"):
        axis = item.getAxis(name)
        axis.setPen(pg.mkPen(text))
        axis.setTextPen(pg.mkPen(text))
        axis.enableAutoSIPrefix(False)  # a loss of 0.7 reads 0.7, not 700 under "(x0.001)"
    item.titleLabel.setAttr("color", text.name())


def legend_below(item: pg.PlotItem, text_colour=None, columns: int = 3) -> pg.LegendItem:
    """The plot's legend in a row under its axis, out of the data (a legend in a corner hid
    accuracy curves near 1.0); the curves plotted with a ``name`` join it."""
    legend = pg.LegendItem(colCount=columns, labelTextColor=text_colour)
    item.layout.addItem(legend, 4, 1)
    item.legend = legend
    return legend


def curves_legend() -> str:
    """The legend of :class:`LiveCurves`, as rich text for one label above the plots."""
    return (f'<span style="color:{TRAIN_COLOUR}">&#9679;&#8212;</span> training &nbsp;&nbsp; '
            f'<span style="color:{VAL_COLOUR}">&#9679;&#8212;</span> validation &nbsp;&nbsp; '
            f'<span style="color:{TRAIN_COLOUR}">&#183;&#183;&#183;&#183;</span> current epoch')


class CountAxis(pg.AxisItem):
    """An axis of whole numbers (epochs, trials): no ticks at 0.5."""

    def tickValues(self, minVal, maxVal, size):  # noqa: N802, N803 - pyqtgraph's names
        levels = [(spacing, values) for spacing, values in super().tickValues(minVal, maxVal, size)
                  if spacing >= 1]
        if not levels:
            low, high = math.ceil(minVal), math.floor(maxVal)
            step = max(1, math.ceil((high - low + 1) / 12))  # no more than a dozen labels
            levels = [(float(step), [float(v) for v in range(low, high + 1, step)])]
        return levels


def counted_plot() -> pg.PlotWidget:
    """A plot whose x axis counts (epochs, trials)."""
    return pg.PlotWidget(axisItems={"bottom": CountAxis("bottom")})


def format_seconds(seconds: float | None) -> str:
    """``m:ss`` or ``h:mm:ss``; an em dash when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "\u2014"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class LiveSeries:
    """One curve fed point by point into a preallocated buffer that doubles when full."""

    def __init__(self, item: pg.PlotDataItem, capacity: int = 64):
        self.item = item
        self._buf = np.empty((2, max(1, capacity)), dtype=np.float64)
        self.n = 0
        self._dirty = False

    @property
    def x(self) -> np.ndarray:
        return self._buf[0, : self.n]

    @property
    def y(self) -> np.ndarray:
        return self._buf[1, : self.n]

    def reserve(self, capacity: int) -> None:
        if capacity > self._buf.shape[1]:
            grown = np.empty((2, capacity), dtype=np.float64)
            grown[:, : self.n] = self._buf[:, : self.n]
            self._buf = grown

    def append(self, x: float, y: float, draw: bool = True) -> None:
        """Add a point; with ``draw=False`` it shows at the next :meth:`flush`."""
        if self.n == self._buf.shape[1]:
            self.reserve(2 * self.n)
        self._buf[0, self.n] = x
        self._buf[1, self.n] = y
        self.n += 1
        self._dirty = True
        if draw:
            self.flush()

    def flush(self) -> None:
        if self._dirty:
            self._dirty = False
            self.item.setData(self.x, self.y)

    def clear(self) -> None:
        self.n = 0
        self._dirty = False
        self.item.setData([], [])


class LiveCurves:
    """A plot of one metric: training and validation per epoch, plus the current epoch's trace.

    Epoch ``e`` (0-based) is drawn at x = e + 1; within it, the running value after batch ``b`` of
    ``steps`` at x = e + b / steps, dotted, so the trace ends where the epoch's point lands.
    Epoch points draw at once; batch points wait for :meth:`flush`, which the panel calls a few
    times a second: a repaint of a plot costs far more than the point.
    """

    def __init__(self, plot: pg.PlotWidget, title: str, y_label: str, y_range: tuple[float, float] | None = None):
        self.plot = plot
        item = plot.getPlotItem()
        item.setTitle(title)
        item.setLabel("bottom", "epoch")
        item.setLabel("left", y_label)
        # No grid: its translucent lines across the whole plot cost most of a repaint (measured
        # 37 ms against 9 ms for a 650x600 plot in the raster engine), several times a second.
        if y_range is not None:
            plot.setYRange(*y_range, padding=0.02)
            item.enableAutoRange(y=False)
            # A fixed range leaves the axes unchanged between epochs: paint them from a cache.
            for name in ("left", "bottom"):
                item.getAxis(name).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        item.setMenuEnabled(False)
        plot.setMouseEnabled(x=False, y=False)
        item.hideButtons()
        # No legend in the plot, where it hid accuracy curves near 1.0: see curves_legend().
        self.train = LiveSeries(plot.plot(
            pen=pg.mkPen(TRAIN_COLOUR, width=2), symbol="o", symbolSize=6,
            symbolBrush=TRAIN_COLOUR, symbolPen=None, name="training",
        ))
        self.val = LiveSeries(plot.plot(
            pen=pg.mkPen(VAL_COLOUR, width=2), symbol="o", symbolSize=6,
            symbolBrush=VAL_COLOUR, symbolPen=None, name="validation",
        ))
        self.current = LiveSeries(plot.plot(
            pen=pg.mkPen(TRAIN_COLOUR, width=1.5, style=Qt.PenStyle.DotLine), name="current epoch",
        ), capacity=256)
        self.markers: list[pg.InfiniteLine] = []

    def mark_phase(self, at_epoch: int, label: str) -> pg.InfiniteLine:
        """A dashed vertical line where a phase begins: after ``at_epoch`` epochs (fine-tuning's start)."""
        colour = self.plot.palette().color(QPalette.ColorRole.Text)
        line = pg.InfiniteLine(
            pos=at_epoch + 0.5, angle=90, movable=False,
            pen=pg.mkPen(colour, width=1, style=Qt.PenStyle.DashLine),
            # The label sits low, right of the line: the legend holds the top right corner.
            label=label, labelOpts={"position": 0.03, "color": colour, "anchors": [(-0.05, 1), (-0.05, 1)]},
        )
        self.plot.addItem(line)
        self.markers.append(line)
        return line

    def reset(self, epochs: int) -> None:
        for line in self.markers:
            self.plot.removeItem(line)
        self.markers.clear()
        for series in (self.train, self.val, self.current):
            series.clear()
        self.train.reserve(epochs)
        self.val.reserve(epochs)
        self.plot.setXRange(0, max(1, epochs), padding=0.02)

    def add_batch(self, epoch: int, batch: int, steps: int, value: float | None) -> None:
        if value is None:
            return
        self.current.append(epoch + batch / max(1, steps), value, draw=False)

    def flush(self) -> None:
        self.current.flush()

    def add_epoch(self, epoch: int, train: float | None, val: float | None) -> None:
        self.current.clear()
        if train is not None:
            self.train.append(epoch + 1, train)
        if val is not None:
            self.val.append(epoch + 1, val)


class _MatrixImage(pg.ImageItem):
    clicked = Signal(int, int)  # row, column

    def mouseClickEvent(self, ev):
        if ev.button() != Qt.MouseButton.LeftButton or self.image is None:
            return
        pos = ev.pos()
        rows, cols = self.image.shape[:2]
        row, col = int(np.floor(pos.y())), int(np.floor(pos.x()))
        if 0 <= row < rows and 0 <= col < cols:
            ev.accept()
            self.clicked.emit(row, col)


class ConfusionMatrixPlot(pg.PlotWidget):
    """A confusion matrix as a heatmap: true class down the side, predicted across, a count per cell.

    The colour of a cell is its share of its row (the class's recall on the diagonal), so a
    small class is as readable as a big one. ``cellClicked(true, predicted)`` on a click.
    """

    cellClicked = Signal(int, int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        style_plot(self)
        item = self.getPlotItem()
        item.setMenuEnabled(False)
        item.hideButtons()
        self.setMouseEnabled(x=False, y=False)
        item.getViewBox().invertY(True)
        item.getViewBox().setAspectLocked(False)
        item.setLabel("bottom", "predicted")
        item.setLabel("left", "true")
        self.image = _MatrixImage(axisOrder="row-major")
        self.image.setColorMap(pg.colormap.get("CET-L12"))  # white to blue
        self.image.clicked.connect(self.cellClicked)
        item.addItem(self.image)
        self._texts: list[pg.TextItem] = []
        self.matrix = np.zeros((0, 0), dtype=int)
        self.selected: tuple[int, int] | None = None
        self._frame = pg.QtWidgets.QGraphicsRectItem()
        self._frame.setPen(pg.mkPen("#d62728", width=3))
        self._frame.setZValue(10)
        self._frame.setVisible(False)
        item.addItem(self._frame)

    def set_matrix(self, matrix, class_names: list[str]) -> None:
        item = self.getPlotItem()
        for text in self._texts:
            item.removeItem(text)
        self._texts = []
        self.matrix = cm = np.asarray(matrix, dtype=int).reshape(len(class_names), len(class_names))
        self.select(None)
        k = len(class_names)
        if k == 0:
            self.image.clear()
            return
        rows = cm.sum(axis=1, keepdims=True)
        share = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
        self.image.setImage(share, levels=(0.0, 1.0))
        self.image.setRect(0, 0, k, k)
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, min(14.0, 120.0 / k)))
        if k <= 40:  # beyond that the numbers cannot be read anyway; the colours still can
            for r in range(k):
                for c in range(k):
                    colour = "#ffffff" if share[r, c] > 0.55 else "#202020"
                    text = pg.TextItem(str(cm[r, c]), color=colour, anchor=(0.5, 0.5))
                    text.setFont(font)
                    text.setPos(c + 0.5, r + 0.5)
                    item.addItem(text)
                    self._texts.append(text)
        ticks = [[(i + 0.5, _short(name)) for i, name in enumerate(class_names)]]
        item.getAxis("bottom").setTicks(ticks)
        item.getAxis("left").setTicks(ticks)
        item.setRange(xRange=(0, k), yRange=(0, k), padding=0)

    def select(self, cell: tuple[int, int] | None) -> None:
        """Outline one cell (row, column), or none."""
        self.selected = cell
        if cell is None:
            self._frame.setVisible(False)
            return
        r, c = cell
        self._frame.setRect(c, r, 1, 1)
        self._frame.setVisible(True)

    def cell_center(self, row: int, col: int):
        """The viewport point at the centre of a cell (for tests that click it)."""
        scene = self.getPlotItem().getViewBox().mapViewToScene(pg.Point(col + 0.5, row + 0.5))
        return self.mapFromScene(scene)


def _short(name: str, limit: int = 14) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "\u2026"


def load_thumbnail(path, size: int) -> QImage | None:
    """``path`` decoded at most ``size`` px on its longer side, upright; None when unreadable.

    Safe off the GUI thread (a QImage, not a QPixmap), and cheap for big JPEGs: the reader
    decodes at the reduced size.
    """
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    full = reader.size()
    if full.isValid() and (full.width() > size or full.height() > size):
        reader.setScaledSize(full.scaled(QSize(size, size), Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    return None if image.isNull() else image


def load_thumbnails(paths, size: int) -> list[QImage | None]:
    return [load_thumbnail(p, size) for p in paths]


class SwitchableConfusionMatrixPlot(ConfusionMatrixPlot):
    """:class:`ConfusionMatrixPlot` whose cells read either counts or each row's share
    (:func:`cnnstudio.core.evaluation.metrics.normalized_confusion`); the colours are the share either way."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.normalized = False
        self._names: list[str] = []

    def set_matrix(self, matrix, class_names: list[str]) -> None:
        self._names = list(class_names)
        super().set_matrix(matrix, class_names)
        self._label_cells()

    def set_normalized(self, normalized: bool) -> None:
        self.normalized = bool(normalized)
        self._label_cells()

    def cell_texts(self) -> list[str]:
        return [t.toPlainText() for t in self._texts]

    def _label_cells(self) -> None:
        from cnnstudio.core.evaluation.metrics import normalized_confusion

        k = len(self._names)
        if not k or len(self._texts) != k * k:
            return
        values = normalized_confusion(self.matrix) if self.normalized else self.matrix.tolist()
        for i, text in enumerate(self._texts):
            v = values[i // k][i % k]
            text.setText(f"{v:.2f}" if self.normalized else str(v))


def _dimmed_pen(plot: pg.PlotWidget):
    colour = plot.palette().color(QPalette.ColorRole.Text)
    colour.setAlpha(110)
    return pg.mkPen(colour, width=1, style=Qt.PenStyle.DashLine)


class CurvePlot(pg.PlotWidget):
    """One curve on [0, 1] x [0, 1] with a dashed reference line: a ROC or a precision-recall curve."""

    def __init__(self, x_label: str, y_label: str, parent: QWidget | None = None):
        super().__init__(parent)
        style_plot(self)
        item = self.getPlotItem()
        item.setMenuEnabled(False)
        item.hideButtons()
        item.showGrid(x=True, y=True, alpha=0.2)
        item.setLabel("bottom", x_label)
        item.setLabel("left", y_label)
        item.setRange(xRange=(0, 1), yRange=(0, 1.02), padding=0.02)
        item.getViewBox().setAspectLocked(True)  # square: the diagonal at 45 degrees, whatever the widget
        self.setMinimumSize(160, 120)
        self.setMouseEnabled(x=False, y=False)
        self.reference = item.plot([], [], pen=_dimmed_pen(self))
        self.curve = item.plot([], [], pen=pg.mkPen(TRAIN_COLOUR, width=2))

    def set_curve(self, x, y, title: str, reference=None) -> None:
        """``reference``: ``((x0, x1), (y0, y1))`` of the dashed line, or None for none."""
        self.curve.setData(np.asarray(x, float), np.asarray(y, float))
        if reference is None:
            self.reference.setData([], [])
        else:
            self.reference.setData(list(reference[0]), list(reference[1]))
        self.getPlotItem().setTitle(title)

    def clear_curve(self, title: str = "") -> None:
        self.set_curve([], [], title)


class ReliabilityPlot(pg.PlotWidget):
    """The reliability diagram: per confidence bin, a bar of its accuracy against the diagonal
    (perfect calibration); the bins come from :func:`cnnstudio.core.evaluation.calibration.reliability`."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        style_plot(self)
        item = self.getPlotItem()
        item.setMenuEnabled(False)
        item.hideButtons()
        item.showGrid(x=False, y=True, alpha=0.2)
        item.setLabel("bottom", "confidence")
        item.setLabel("left", "accuracy")
        item.setRange(xRange=(0, 1), yRange=(0, 1.02), padding=0.02)
        item.getViewBox().setAspectLocked(True)  # square: the diagonal at 45 degrees, whatever the widget
        self.setMinimumSize(160, 120)
        self.setMouseEnabled(x=False, y=False)
        self.bars = pg.BarGraphItem(x0=[], height=[], width=[], brush=TRAIN_COLOUR, pen=pg.mkPen("#ffffff"))
        self.gap = pg.BarGraphItem(x0=[], y0=[], height=[], width=[], brush=pg.mkBrush(214, 39, 40, 70),
                                   pen=pg.mkPen("#d62728"))
        item.addItem(self.bars)
        item.addItem(self.gap)
        item.plot([0, 1], [0, 1], pen=_dimmed_pen(self))
        self.bins: list[dict] = []

    def set_bins(self, bins: list[dict], ece: float | None) -> None:
        self.bins = list(bins)
        full = [b for b in bins if b["count"]]
        x0 = [b["lower"] for b in full]
        width = [b["upper"] - b["lower"] for b in full]
        acc = [b["accuracy"] for b in full]
        conf = [b["confidence"] for b in full]
        self.bars.setOpts(x0=x0, height=acc, width=width)
        # the gap between each bin's accuracy and its mean confidence
        self.gap.setOpts(x0=x0, y0=[min(a, c) for a, c in zip(acc, conf)],
                         height=[abs(a - c) for a, c in zip(acc, conf)], width=width)
        n = sum(b["count"] for b in bins)
        title = "no predictions" if ece is None else f"Expected calibration error {ece:.3f} ({n} images)"
        self.getPlotItem().setTitle(title)
