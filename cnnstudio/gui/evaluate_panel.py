"""The Evaluate panel: one run's test metrics, confusion matrix, per-class table and the images
behind each cell of the matrix.

Everything shown comes from the run folder (``metrics.json``, ``predictions.csv``,
``config.json``), so a run opened from a project months later looks the same as when it ended.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cnnstudio.core.atomic import read_json
from cnnstudio.core.runs import RunPaths
from cnnstudio.gui.plots import ConfusionMatrixPlot, format_seconds, load_thumbnails
from cnnstudio.gui.workers import FunctionWorker

THUMB = 96
MAX_CELL_IMAGES = 1000  # a cell of a big test set lists this many, most confident first


@dataclass
class PredictionRow:
    path: str  # relative to the dataset root
    true: str
    predicted: str
    confidence: float


@dataclass
class RunReport:
    """What the panel shows of one run, read from its folder."""

    run_dir: Path
    metrics: dict
    predictions: list[PredictionRow]
    dataset_root: Path | None

    @classmethod
    def read(cls, run_dir) -> RunReport:
        paths = RunPaths(Path(run_dir))
        metrics = read_json(paths.metrics)
        rows: list[PredictionRow] = []
        if paths.predictions.exists():
            with open(paths.predictions, encoding="utf-8", newline="") as f:
                for r in csv.DictReader(f):
                    rows.append(PredictionRow(r["path"], r["true"], r["predicted"], float(r["confidence"])))
        root = None
        if paths.config.exists():
            root_text = read_json(paths.config).get("dataset", {}).get("root")
            root = Path(root_text) if root_text else None
        return cls(Path(run_dir), metrics, rows, root)

    @property
    def class_names(self) -> list[str]:
        return list(self.metrics.get("class_names", []))

    def cell(self, true: int, predicted: int) -> list[PredictionRow]:
        names = self.class_names
        rows = [r for r in self.predictions if r.true == names[true] and r.predicted == names[predicted]]
        return sorted(rows, key=lambda r: (-r.confidence, r.path))


class _Stat(QFrame):
    """A number with its caption under it."""

    def __init__(self, caption: str):
        super().__init__()
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        self.value = QLabel("\u2014")
        font = self.value.font()
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        self.value.setFont(font)
        self.value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.caption = QLabel(caption)
        self.caption.setEnabled(False)  # the palette's dimmed text
        layout.addWidget(self.value)
        layout.addWidget(self.caption)

    def set(self, text: str) -> None:
        self.value.setText(text)


class EvaluatePanel(QWidget):
    """Shows the session's current run; picking another run here selects it in the session."""

    TABLE_COLUMNS = ("Class", "Precision", "Recall", "F1", "Support")

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.report: RunReport | None = None
        self._syncing = False
        self._thumb_job = 0
        self.thumbnails_shown = 0  # of the listed cell images, how many have their picture

        top = QHBoxLayout()
        top.addWidget(QLabel("Run"))
        self.run_combo = QComboBox()
        self.run_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.run_combo.setMinimumContentsLength(30)
        self.run_combo.currentIndexChanged.connect(self._on_combo)
        top.addWidget(self.run_combo, 1)
        self.message = QLabel()
        self.message.setWordWrap(True)
        top.addWidget(self.message, 2)

        stats = QGridLayout()
        self.stats = {key: _Stat(caption) for key, caption in (
            ("accuracy", "test accuracy"), ("loss", "test loss"), ("images", "test images"),
            ("time", "training time"), ("status", "status"),
        )}
        for i, stat in enumerate(self.stats.values()):
            stats.addWidget(stat, 0, i)

        self.matrix_plot = ConfusionMatrixPlot()
        self.matrix_plot.setMinimumSize(260, 240)
        self.matrix_plot.cellClicked.connect(self.show_cell)
        matrix_box = QGroupBox("Confusion matrix (click a cell to see its images)")
        QVBoxLayout(matrix_box).addWidget(self.matrix_plot)

        self.table = QTableWidget(0, len(self.TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(self.TABLE_COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        self.table.setWordWrap(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in range(1, len(self.TABLE_COLUMNS)):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setMinimumWidth(420)
        table_box = QGroupBox("Per class")
        QVBoxLayout(table_box).addWidget(self.table)

        upper = QSplitter(Qt.Orientation.Horizontal)
        upper.addWidget(matrix_box)
        upper.addWidget(table_box)
        upper.setStretchFactor(0, 3)
        upper.setStretchFactor(1, 2)

        self.cell_label = QLabel("No cell selected.")
        self.cell_list = QListWidget()
        self.cell_list.setViewMode(QListView.ViewMode.IconMode)
        self.cell_list.setIconSize(QSize(THUMB, THUMB))
        self.cell_list.setGridSize(QSize(THUMB + 80, THUMB + 44))
        self.cell_list.setResizeMode(QListView.ResizeMode.Adjust)
        self.cell_list.setMovement(QListView.Movement.Static)
        self.cell_list.setWordWrap(True)
        self.cell_list.setUniformItemSizes(True)
        cells_box = QGroupBox("Images")
        cells_layout = QVBoxLayout(cells_box)
        cells_layout.addWidget(self.cell_label)
        cells_layout.addWidget(self.cell_list)

        lower = QSplitter(Qt.Orientation.Vertical)
        lower.addWidget(upper)
        lower.addWidget(cells_box)
        lower.setStretchFactor(0, 3)
        lower.setStretchFactor(1, 2)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(stats)
        layout.addWidget(lower, 1)

        session.runsChanged.connect(self._fill_runs)
        session.currentRunChanged.connect(self._follow_session)
        self._fill_runs()
        self._follow_session(session.current_run)

    # -- runs -----------------------------------------------------------------------------

    def _fill_runs(self) -> None:
        self._syncing = True
        try:
            self.run_combo.clear()
            for run in self.session.runs:
                acc = (run.get("metrics") or {}).get("test_accuracy")
                label = run["name"] + (f"  (accuracy {acc:.1%})" if acc is not None else "")
                self.run_combo.addItem(label, run["path"])
            i = self.run_combo.findData(self.session.current_run)
            self.run_combo.setCurrentIndex(i)
        finally:
            self._syncing = False

    def _on_combo(self, i: int) -> None:
        if self._syncing or i < 0:
            return
        self.session.select_run(self.run_combo.itemData(i))

    def _follow_session(self, path: str) -> None:
        self._syncing = True
        try:
            self.run_combo.setCurrentIndex(self.run_combo.findData(path) if path else -1)
        finally:
            self._syncing = False
        self.load_run(path)

    # -- showing a run --------------------------------------------------------------------

    def load_run(self, path) -> None:
        """Show the run in ``path`` ("" clears the panel)."""
        self.report = None
        self._clear()
        if not path:
            self.message.setText("No run selected. Train a model, or pick a run.")
            return
        try:
            report = RunReport.read(path)
        except FileNotFoundError:
            self.message.setText(f"{Path(path).name} has no results yet (training, or interrupted).")
            return
        except (OSError, ValueError, KeyError) as exc:
            self.message.setText(f"Cannot read {path}: {exc}")
            return
        self.report = report
        m = report.metrics
        acc, loss = m.get("test_accuracy"), m.get("test_loss")
        self.stats["accuracy"].set(f"{acc:.2%}" if acc is not None else "\u2014")
        self.stats["loss"].set(f"{loss:.4f}" if loss is not None else "\u2014")
        self.stats["images"].set(str(m.get("test_images", "\u2014")))
        self.stats["time"].set(format_seconds(m.get("train_seconds")))
        status = str(m.get("status", "?")).replace("_", " ")
        self.stats["status"].set(f"{status}, {m.get('epochs_run', '?')} ep.")
        cm = m.get("confusion_matrix")
        if cm is None:
            self.message.setText("No test metrics for this run (stopped before the end, or no test split).")
            return
        self.message.setText(str(report.run_dir))
        self.matrix_plot.set_matrix(cm, report.class_names)
        self._fill_table(m, report.class_names)

    def _clear(self) -> None:
        for stat in self.stats.values():
            stat.set("\u2014")
        self.matrix_plot.set_matrix([], [])
        self.table.setRowCount(0)
        self._thumb_job += 1
        self.thumbnails_shown = 0
        self.cell_list.clear()
        self.cell_label.setText("No cell selected.")

    def _fill_table(self, m: dict, names: list[str]) -> None:
        rows = [(name, m["per_class"][name]) for name in names]
        rows += [("macro avg", m["macro_avg"]), ("weighted avg", m["weighted_avg"])]
        self.table.setRowCount(len(rows))
        for r, (name, d) in enumerate(rows):
            cells = [name, f"{d['precision']:.3f}", f"{d['recall']:.3f}", f"{d['f1']:.3f}", str(d["support"])]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if r >= len(names):
                    font = item.font()
                    font.setItalic(True)
                    item.setFont(font)
                self.table.setItem(r, c, item)

    # -- the images of a cell -------------------------------------------------------------

    def show_cell(self, true: int, predicted: int) -> None:
        """List the test images of true class ``true`` predicted as ``predicted``."""
        report = self.report
        if report is None or not report.class_names:
            return
        names = report.class_names
        self.matrix_plot.select((true, predicted))
        rows = report.cell(true, predicted)
        shown = rows[:MAX_CELL_IMAGES]
        what = "correctly classified" if true == predicted else f"predicted as {names[predicted]}"
        more = f" (the {len(shown)} most confident shown)" if len(shown) < len(rows) else ""
        self.cell_label.setText(f"True {names[true]}, {what}: {len(rows)} image(s){more}")
        self._thumb_job += 1
        self.thumbnails_shown = 0
        self.cell_list.clear()
        placeholder = QPixmap(THUMB, THUMB)
        placeholder.fill(self.palette().color(self.backgroundRole()))
        files = []
        for row in shown:
            item = QListWidgetItem(QIcon(placeholder), f"{Path(row.path).name}\n{row.confidence:.1%}")
            full = report.dataset_root / row.path if report.dataset_root else Path(row.path)
            item.setToolTip(f"{row.path}\npredicted {row.predicted} with confidence {row.confidence:.2%}")
            item.setData(Qt.ItemDataRole.UserRole, row.path)
            self.cell_list.addItem(item)
            files.append(full)
        if files:
            job = self._thumb_job
            worker = FunctionWorker(_thumbnails_for_job, job, files, THUMB)
            worker.signals.finished.connect(self._on_thumbnails)
            worker.start()

    def cell_paths(self) -> list[str]:
        """The dataset-relative paths listed for the selected cell."""
        return [self.cell_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.cell_list.count())]

    def _on_thumbnails(self, result) -> None:
        job, images = result
        if job != self._thumb_job:
            return  # another cell was picked meanwhile
        for i, image in enumerate(images):
            item = self.cell_list.item(i)
            if item is None:
                break
            if image is None:
                item.setText(item.text() + "\n(missing)")
            else:
                item.setIcon(QIcon(QPixmap.fromImage(image)))
        self.thumbnails_shown = len(images)


def _thumbnails_for_job(job: int, files, size: int):
    return job, load_thumbnails(files, size)
