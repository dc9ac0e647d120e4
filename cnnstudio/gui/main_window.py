"""The main window: a start page, then Data -> Model -> Train -> Evaluate -> Predict.

Panels are created the first time they are shown, so the window appears quickly (pyqtgraph and
TensorFlow load later). They share one :class:`Session` and never talk to each other.

The window starts with the built-in plugin registered and looks for the installed plugins in a
worker (an import may take seconds, or hang): every page works with the built-ins meanwhile,
the status bar says "Loading plugins...", and the plugins' providers join the same registry when
the search ends. A project opened meanwhile (its model may be a plugin's) and a plugin change
asked for meanwhile wait for it.
"""

from __future__ import annotations

import platform
import shutil
import sys
from pathlib import Path

from PySide6.QtCore import QSettings, QSize, Qt, QTimer, Signal, qVersion
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QProgressDialog,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from cnnstudio import __version__
from cnnstudio.core.project import PROJECT_SUFFIX
from cnnstudio.gui.dialogs import errors
from cnnstudio.gui.panels.start import StartPage
from cnnstudio.gui.qthreading import Worker
from cnnstudio.gui.session import Session
from cnnstudio.gui.widgets import common as widgets

MAX_RECENT = 8

# (key, sidebar title, icon); Ctrl+1..6 go to the workflow panels and Experiments.
PAGES = (
    ("start", "Start", "home"),
    ("data", "Data", "data"),
    ("model", "Model", "model"),
    ("train", "Train", "train"),
    ("evaluate", "Evaluate", "evaluate"),
    ("predict", "Predict", "predict"),
    ("experiments", "Experiments", "experiments"),
)

PROJECT_FILTER = f"CNN Studio projects (*{PROJECT_SUFFIX});;All files (*)"


def _write_report(run: str, target: Path) -> Path:
    if target.suffix.lower() == ".pdf":
        from cnnstudio.gui.pdf import write_run_pdf

        return write_run_pdf(run, target)
    from cnnstudio.core.io.atomic import atomic_write_text
    from cnnstudio.core.report import run_report_html

    atomic_write_text(target, run_report_html(run))
    return target


def _copy_bundle(bundle: Path, target: Path) -> Path:
    """The bundle folder copied whole to ``target`` or not at all (a full disk: one line)."""
    from cnnstudio.core.io.atomic import atomic_folder

    with atomic_folder(target) as tmp:
        shutil.copytree(bundle, tmp, dirs_exist_ok=True)
    return target


def _load_tensorflow() -> dict:
    """Import TensorFlow and Keras (seconds) and name the compute device; runs in a worker."""
    from cnnstudio.core.tf import device_description, keras, tf
    from cnnstudio.core.training.devices import gpu_names

    return {
        "tensorflow": tf().__version__,
        "keras": keras().__version__,
        "device": device_description(),
        "gpus": gpu_names(),
    }


def _default_manager():
    """The process-wide plugin manager at once: with the built-ins only if it had not loaded yet."""
    from cnnstudio.builtins.manager import default_manager

    return default_manager(wait=False)


class _ClickLabel(QLabel):
    """A label that says when it is clicked (the status bar's job line leads to its page)."""

    clicked = Signal()

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit()
        super().mousePressEvent(event)


class _FitLayout(QVBoxLayout):
    """A page's layout in its scroll area: a word-wrapped label makes a layout height-for-width,
    and a scroll area then gives the page its preferred height, scrolling a page that would fit."""

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt's name
        return False


def _fitted(page: QWidget) -> QWidget:
    """``page`` in a holder that a scroll area shrinks down to the page's minimum size."""
    holder = QWidget()
    layout = _FitLayout(holder)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(page)
    return holder


class MainWindow(QMainWindow):
    pluginsLoaded = Signal()  # the installed plugins found at start-up are registered

    def __init__(self, manager=None, parent=None):
        super().__init__(parent)
        self.manager = manager if manager is not None else _default_manager()
        self.session = Session(self.manager.registry, self)
        self._plugin_worker: Worker | None = None
        self._after_plugins: list = []  # what waits for the installed plugins (opening a project)
        self.tf_info: dict | None = None
        self._tf_worker: Worker | None = None
        self.last_report: Path | None = None  # the last report File > Export Report wrote
        self._panels: dict[str, QWidget] = {}
        self._containers: dict[str, QWidget] = {}

        self.setWindowIcon(widgets.icon("app"))
        self.setAcceptDrops(True)
        self.setMinimumSize(960, 600)
        self._build_body()
        self._build_actions()
        self._build_menus()
        self._build_status_bar()

        self.session.projectChanged.connect(self._update_title)
        self.session.jobChanged.connect(self._show_job)
        self.session.jobProgress.connect(self._show_job_progress)
        self.session.undoChanged.connect(self._update_undo_actions)
        self.session.undoRefused.connect(self._undo_refused)
        self.session.datasetEdited.connect(self._dataset_edited)
        for signal in (self.session.jobChanged, self.session.datasetChanged):  # once the panel holds its worker
            signal.connect(lambda *_: QTimer.singleShot(0, self, self._update_train_actions))
        self._update_train_actions()
        self._update_undo_actions()
        self._update_title()
        self._refresh_recent()
        self.show_page("start")
        if not getattr(self.manager, "complete", True):
            self.discover_plugins()

    # ------------------------------------------------------------------ layout

    def _build_body(self) -> None:
        body = QWidget()
        layout = QHBoxLayout(body)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)

        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setIconSize(QSize(22, 22))
        self.sidebar.setFrameShape(QListWidget.Shape.NoFrame)
        self.sidebar.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.sidebar.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        # The sidebar sits on the window colour, not the base colour of list views.
        self.sidebar.setBackgroundRole(self.sidebar.palette().ColorRole.Window)
        self.sidebar.viewport().setBackgroundRole(self.sidebar.palette().ColorRole.Window)
        font = self.sidebar.font()
        font.setPointSizeF(font.pointSizeF() * 1.1)
        self.sidebar.setFont(font)
        self.stack = QStackedWidget()
        for key, title, icon_name in PAGES:
            item = QListWidgetItem(widgets.icon(icon_name), title)
            item.setSizeHint(QSize(0, 40))
            item.setData(Qt.ItemDataRole.UserRole, key)
            self.sidebar.addItem(item)
            container = QWidget()
            container.setLayout(QVBoxLayout())
            container.layout().setContentsMargins(0, 0, 0, 0)
            self._containers[key] = container
            self.stack.addWidget(container)
        widest = max(self.sidebar.fontMetrics().horizontalAdvance(title) for _, title, _ in PAGES)
        self.sidebar.setFixedWidth(widest + self.sidebar.iconSize().width() + 56)
        self.sidebar.currentRowChanged.connect(self._on_sidebar_row)

        self.start_page = StartPage()
        self.start_page.sampleRequested.connect(self.open_sample)
        self.start_page.openFolderRequested.connect(self.choose_dataset)
        self.start_page.openProjectRequested.connect(self.choose_project)
        self.start_page.recentRequested.connect(self.open_project)
        self._set_panel("start", self.start_page)

        layout.addWidget(self.sidebar)
        layout.addWidget(_vertical_line())
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(body)

    def _build_actions(self) -> None:
        def action(text, slot, shortcut=None, icon_name=None):
            a = QAction(text, self)
            if icon_name:
                a.setIcon(widgets.icon(icon_name))
            if shortcut is not None:
                a.setShortcut(QKeySequence(shortcut))
            a.triggered.connect(slot)
            self.addAction(a)
            return a

        self.new_action = action("&New Project", self.new_project, QKeySequence.StandardKey.New)
        self.open_action = action("&Open Project...", self.choose_project, QKeySequence.StandardKey.Open)
        self.open_dataset_action = action("Open &Dataset Folder...", self.choose_dataset, "Ctrl+Shift+O")
        self.sample_action = action("Open the &Sample Dataset", self.open_sample)
        self.save_action = action("&Save", self.save, QKeySequence.StandardKey.Save)
        self.save_as_action = action("Save &As...", self.save_as, QKeySequence("Ctrl+Shift+S"))
        self.export_action = action("&Export Model...", self.export_model, "Ctrl+E")
        self.report_action = action("Export &Report...", self.export_report, "Ctrl+Shift+E")
        self.quit_action = action("&Quit", self.close, QKeySequence("Ctrl+Q"))
        self.undo_action = action("&Undo", self.undo, QKeySequence.StandardKey.Undo)
        self.redo_action = action("&Redo", self.redo, QKeySequence.StandardKey.Redo)
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        # From any page: Ctrl+Enter starts the Train page's training, Esc stops it (once asked). Esc is
        # the window's only while a run trains (the action is disabled otherwise); dialogs keep theirs.
        self.train_action = action("Start &Training", self.start_training)
        self.train_action.setShortcuts([QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
        self.stop_action = action("Sto&p Training...", self.stop_training, QKeySequence("Esc"))
        self.page_actions = []
        for number, (key, title, icon_name) in enumerate(PAGES):
            shortcut = f"Ctrl+{number}" if number else None
            a = action(title, lambda checked=False, k=key: self.show_page(k), shortcut, icon_name)
            self.page_actions.append(a)
        self.about_action = action("&About CNN Studio", self.show_about)
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)
        self.plugins_action = action("&Plugins...", self.show_plugins)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(self.new_action)
        file_menu.addAction(self.open_action)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addSeparator()
        file_menu.addAction(self.open_dataset_action)
        file_menu.addAction(self.sample_action)
        file_menu.addSeparator()
        file_menu.addAction(self.save_action)
        file_menu.addAction(self.save_as_action)
        file_menu.addSeparator()
        file_menu.addAction(self.export_action)
        file_menu.addAction(self.report_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)

        edit_menu = bar.addMenu("&Edit")
        edit_menu.addAction(self.undo_action)
        edit_menu.addAction(self.redo_action)

        go_menu = bar.addMenu("&Go")
        for a in self.page_actions:
            go_menu.addAction(a)
        go_menu.addSeparator()
        go_menu.addAction(self.train_action)
        go_menu.addAction(self.stop_action)

        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.plugins_action)
        help_menu.addAction(self.about_action)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.job_label = _ClickLabel()
        self.job_label.clicked.connect(self._go_to_job)
        self.job_bar = QProgressBar()  # the job that trains, on every page
        self.job_bar.setMaximumWidth(140)
        self.job_bar.setMaximumHeight(14)
        self.job_bar.setTextVisible(False)
        self.job_bar.hide()
        self.device_label = QLabel("TensorFlow not loaded")
        self.device_label.setToolTip("The compute device training will use")
        bar.addWidget(self.job_bar)
        bar.addWidget(self.job_label, 1)
        bar.addPermanentWidget(self.device_label)
        self._say_plugin_problems()

    def _say_plugin_problems(self) -> None:
        """In the status bar: how many plugins failed, and which took seconds to load."""
        parts = []
        n = len(getattr(self.manager, "errors", []))
        if n:
            parts.append(f"{n} plugin error{'s' if n > 1 else ''}: see Help > Plugins")
        parts += getattr(self.manager, "warnings", [])
        if parts:
            self.statusBar().showMessage("; ".join(parts), 15000)

    # ------------------------------------------------------------------ pages

    def _set_panel(self, key: str, widget: QWidget) -> None:
        self._panels[key] = widget
        # A page wider or taller than a small screen scrolls rather than push the window past its edge.
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # no extra stop for Tab between the sidebar and the page
        scroll.setWidget(_fitted(widget))
        self._containers[key].layout().addWidget(scroll)

    def panel(self, key: str) -> QWidget:
        """The panel for ``key`` (see PAGES), created on first use."""
        if key not in self._panels:
            self._set_panel(key, self._create_panel(key))
        return self._panels[key]

    def _create_panel(self, key: str) -> QWidget:
        if key == "data":
            from cnnstudio.gui.panels.data import DataPanel

            return DataPanel(self.session)
        if key == "model":
            from cnnstudio.gui.panels.model import ModelPanel

            return ModelPanel(self.session)
        if key == "train":
            from cnnstudio.gui.panels.train import TrainPanel

            train = TrainPanel(self.session)
            if self.tf_info is not None:
                train.set_gpus(self.tf_info.get("gpus", []))
            keys = {a: a.shortcuts()[-1].toString(QKeySequence.SequenceFormat.NativeText)
                    for a in (self.train_action, self.stop_action)}
            train.set_start_tip(f"Train a new run with these settings ({keys[self.train_action]})")
            train.stop_button.setToolTip(f"{train.stop_button.toolTip()} ({keys[self.stop_action]})")
            return train
        if key == "evaluate":
            from cnnstudio.gui.panels.evaluate import EvaluatePanel

            return EvaluatePanel(self.session)
        if key == "predict":
            from cnnstudio.gui.panels.predict import PredictPanel

            return PredictPanel(self.session)
        if key == "experiments":
            from cnnstudio.gui.panels.experiments import ExperimentsPanel

            return ExperimentsPanel(self.session)
        raise KeyError(f"no page {key!r}")

    def _dataset_edited(self, root: str, _what: str) -> None:
        """An image was moved to another class folder (or back): rescan the dataset it belongs to."""
        data = self.panel("data")
        if root and self.session.dataset_root is not None \
                and Path(root).resolve() == Path(self.session.dataset_root).resolve() and not data.is_scanning():
            data.rescan()
            self.statusBar().showMessage("The dataset folder changed; rescanning it", 5000)

    def show_page(self, key: str) -> QWidget:
        """Show page ``key`` (creating its panel) and return the panel."""
        keys = [k for k, _, _ in PAGES]
        row = keys.index(key)
        panel = self.panel(key)
        if self.sidebar.currentRow() != row:
            self.sidebar.setCurrentRow(row)  # -> _on_sidebar_row
        self.stack.setCurrentIndex(row)
        return panel

    # ------------------------------------------------------------------ undo

    # Edit > Undo and Redo walk the session's one history (its QUndoStack) on every page. The
    # actions are the window's own, kept in step with the stack, so that an Undo the file system
    # would refuse is said (undoRefused) and leaves the history as it was.

    def undo(self) -> None:
        self.session.undo()

    def redo(self) -> None:
        self.session.redo()

    def _update_undo_actions(self) -> None:
        what = self.session.undo_text()
        self.undo_action.setText(f"Undo {what}" if what else "Undo")
        self.undo_action.setEnabled(self.session.undo_stack.canUndo())
        what = self.session.redo_text()
        self.redo_action.setText(f"Redo {what}" if what else "Redo")
        self.redo_action.setEnabled(self.session.undo_stack.canRedo())

    def _undo_refused(self, title: str, message: str) -> None:
        errors.show_error(self, title, message)

    def current_page(self) -> str:
        return PAGES[self.stack.currentIndex()][0]

    def _on_sidebar_row(self, row: int) -> None:
        if row >= 0:
            self.show_page(PAGES[row][0])

    @property
    def data_panel(self):
        return self.panel("data")

    @property
    def model_panel(self):
        return self.panel("model")

    # ------------------------------------------------------------------ TensorFlow

    def load_tensorflow_in_background(self) -> Worker:
        """Start importing TensorFlow off the GUI thread; the device shows in the status bar."""
        if self._tf_worker is None:
            self.device_label.setText("Loading TensorFlow...")
            self._tf_worker = Worker(_load_tensorflow)
            self._tf_worker.finished.connect(self._tensorflow_loaded)
            self._tf_worker.errored.connect(self._tensorflow_failed)
            self._tf_worker.start()
        return self._tf_worker

    def _tensorflow_loaded(self, info: dict) -> None:
        self.tf_info = info
        if "train" in self._panels:  # the Train page's device choices (a page made later asks tf_info)
            self._panels["train"].set_gpus(info.get("gpus", []))
        self.device_label.setText(info["device"])
        self.device_label.setToolTip(f"TensorFlow {info['tensorflow']}, Keras {info['keras']}")

    def _tensorflow_failed(self, message: str, details: str) -> None:
        self.device_label.setText("TensorFlow unavailable")
        errors.show_error(self, "TensorFlow could not be loaded", message, details)

    # ------------------------------------------------------------------ datasets

    def choose_dataset(self) -> None:
        start = str(self.session.dataset_root or "")
        folder = QFileDialog.getExistingDirectory(self, "Open a dataset folder (one sub-folder per class)", start)
        if folder:
            self.open_dataset(folder)

    def open_dataset(self, folder, touch: bool = True) -> Worker:
        """Scan ``folder`` as the dataset (in a worker); shows the Data panel. ``touch=False``
        when it is no work of the user's (the folder the app was started on)."""
        panel = self.show_page("data")
        return panel.load_folder(folder, touch=touch)

    def open_sample(self) -> Worker:
        """Generate the built-in shapes dataset on first use (a worker), then open it."""
        from cnnstudio.core.data.sample import sample_dataset_path

        worker = Worker(sample_dataset_path)
        self.session.track(worker.describe("Preparing the sample dataset..."), worker.what)
        worker.finished.connect(self._sample_ready)
        worker.errored.connect(self._sample_failed)
        return worker.start()

    def _sample_ready(self, path) -> None:
        # The built-in sample in a new project is nothing to save; in a saved one, it replaces its dataset.
        self.open_dataset(path, touch=self.session.project_path is not None)

    def _sample_failed(self, message: str, details: str) -> None:
        errors.show_error(self, "The sample dataset could not be prepared", message, details)

    # ------------------------------------------------------------------ projects

    def new_project(self) -> None:
        if not self._maybe_save():
            return
        self.session.reset()
        self.show_page("start")

    def choose_project(self) -> None:
        if not self._maybe_save():
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open a project", self._project_folder(), PROJECT_FILTER)
        if path:
            self.open_project(path)

    def open_project(self, path) -> bool:
        """Read ``path`` into the session and rescan its dataset; False (after a message) on error.

        While the installed plugins are being looked for (its model may be a plugin's), it is
        opened once they are registered, and True is returned now."""
        path = Path(path)
        if self.plugins_loading():
            self.after_plugins(lambda: self.open_project(path))
            self.statusBar().showMessage(f"Opening {path.name} once the plugins have loaded", 10000)
            return True
        try:
            self.session.load_project(path)
        except Exception as exc:  # noqa: BLE001 - a bad file is a message, not a crash
            message, details = errors.describe(exc)
            errors.show_error(self, "The project could not be opened", message, details)
            self._forget_recent(path)
            return False
        self._add_recent(path)
        if self.session.dataset_root is not None:
            self.show_page("data").load_folder(self.session.dataset_root, touch=False)
        else:
            self.show_page("data")
        warnings = self.session.load_warnings
        if warnings:
            errors.show_error(self, "Part of the project was left out", warnings[0])
        self.statusBar().showMessage(f"Opened {path.name}", 5000)
        return True

    def reopen_last_project(self) -> None:
        last = QSettings().value("project/last", "", str)
        if last and Path(last).is_file():
            self.open_project(last)

    def save(self) -> bool:
        if self.session.project_path is None:
            return self.save_as()
        return self._save_to(self.session.project_path)

    def save_as(self) -> bool:
        root = self.session.dataset_root  # a project is named after its dataset until named otherwise
        suggested = self.session.project_path or Path(self._project_folder()) / (
            f"{root.name if root is not None and root.name else 'untitled'}{PROJECT_SUFFIX}")
        path, _ = QFileDialog.getSaveFileName(self, "Save the project", str(suggested), PROJECT_FILTER)
        if not path:
            return False
        if not path.endswith(PROJECT_SUFFIX):
            path = path.removesuffix(".json") + PROJECT_SUFFIX
        return self._save_to(Path(path))

    def _save_to(self, path: Path) -> bool:
        try:
            self.session.save_project(path)
        except OSError as exc:
            errors.show_error(self, "The project could not be saved", f"{path}: {exc.strerror or exc}")
            return False
        self._add_recent(path)
        self.statusBar().showMessage(f"Saved {path.name}", 5000)
        return True

    def _project_folder(self) -> str:
        if self.session.project_path is not None:
            return str(self.session.project_path.parent)
        recent = self.recent_projects()
        return str(Path(recent[0]).parent) if recent else str(Path.home())

    def _maybe_save(self) -> bool:
        """Ask to save unsaved changes; False when the user cancels."""
        if not self.session.modified:
            return True
        buttons = (QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                   | QMessageBox.StandardButton.Cancel)
        answer = widgets.ask(self, "Unsaved changes", "Save the changes to this project first?",
                             buttons, QMessageBox.StandardButton.Save)
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        return answer == QMessageBox.StandardButton.Discard

    def _update_title(self) -> None:
        path = self.session.project_path
        name = path.name.removesuffix(PROJECT_SUFFIX) if path else "Untitled"
        self.setWindowTitle(f"{name}[*]")  # Qt adds " — CNN Studio", the application's display name
        self.setWindowModified(self.session.modified)

    # ------------------------------------------------------------------ recent projects

    def recent_projects(self) -> list[str]:
        value = QSettings().value("project/recent", [])
        if isinstance(value, str):  # QSettings gives a lone string for a one-item list
            value = [value]
        return [str(v) for v in value or []]

    def _add_recent(self, path: Path) -> None:
        path = str(Path(path).absolute())
        recent = [path] + [p for p in self.recent_projects() if p != path]
        settings = QSettings()
        settings.setValue("project/recent", recent[:MAX_RECENT])
        settings.setValue("project/last", path)
        self._refresh_recent()

    def _forget_recent(self, path: Path) -> None:
        path = str(Path(path).absolute())
        QSettings().setValue("project/recent", [p for p in self.recent_projects() if p != path])
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.start_page.set_recent(self.recent_projects())

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.recent_projects()
        for path in recent:
            a = self.recent_menu.addAction(Path(path).name.removesuffix(PROJECT_SUFFIX))
            a.setToolTip(path)
            a.triggered.connect(lambda checked=False, p=path: self._open_recent(p))
        if not recent:
            self.recent_menu.addAction("No recent projects").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear the List", self._clear_recent)

    def _open_recent(self, path: str) -> None:
        if self._maybe_save():
            self.open_project(path)

    def _clear_recent(self) -> None:
        QSettings().setValue("project/recent", [])
        self._refresh_recent()

    # ------------------------------------------------------------------ export, about, plugins

    BUNDLE_FORMAT = "Model bundle folder (for cnnstudio predict)"

    def export_formats(self) -> list[tuple[str, object]]:
        """(label, exporter or None for the bundle) as File > Export Model offers them."""
        exporters = getattr(self.manager.registry, "exporters", {})
        return [(self.BUNDLE_FORMAT, None)] + [
            (f"{e.display_name} ({e.id})", e) for e in exporters.values()
        ]

    def export_model(self) -> Worker | None:
        """Export the current run's model: its bundle folder, or any registered format (a plugin's
        too), written and verified on the run's test images."""
        from PySide6.QtWidgets import QInputDialog

        from cnnstudio.core.runs.folder import RunPaths

        run = self.session.current_run
        if not run:
            errors.show_error(self, "Nothing to export", "Train a model first, or select a run.")
            return None
        bundle = RunPaths(Path(run)).bundle
        if not bundle.is_dir():
            errors.show_error(self, "Nothing to export", f"{bundle}: this run has no model bundle (yet)")
            return None
        formats = self.export_formats()
        label, ok = QInputDialog.getItem(self, "Export Model", f"Export {Path(run).name} as:",
                                         [label for label, _ in formats], 0, False)
        if not ok:
            return None
        exporter = dict(formats)[label]
        if exporter is None:
            return self._export_bundle(run, bundle)
        return self._export_format(run, exporter)

    def _export_bundle(self, run: str, bundle: Path) -> Worker | None:
        folder = QFileDialog.getExistingDirectory(self, "Export the model bundle into", str(Path.home()))
        if not folder:
            return None
        target = Path(folder) / f"{Path(run).name}-model"
        if target.exists():
            errors.show_error(self, "Not exported", f"{target} already exists; choose another folder")
            return None
        worker = Worker(_copy_bundle, bundle, target)
        self.session.track(worker.describe(f"Exporting the model to {target}...", writes=True), worker.what)
        self._export_target = target
        worker.finished.connect(self._exported)
        worker.errored.connect(self._export_failed)
        return worker.start()

    def _export_format(self, run: str, exporter) -> Worker | None:
        from cnnstudio.builtins.export import export_run

        name = Path(run).name
        if exporter.folder:
            folder = QFileDialog.getExistingDirectory(self, f"Export the {exporter.display_name} into",
                                                      str(Path.home()))
            if not folder:
                return None
            target = Path(folder) / f"{name}-{exporter.id}"
        else:
            path, _ = QFileDialog.getSaveFileName(
                self, f"Export as {exporter.display_name}", str(Path.home() / f"{name}{exporter.suffix}"),
                f"{exporter.display_name} (*{exporter.suffix});;All files (*)")
            if not path:
                return None
            target = Path(path)
        exporters = self.manager.registry.exporters

        def job(state):
            return export_run(run, exporter.id, target, exporters=exporters, state=state)

        worker = Worker(job).describe(
            f"Exporting {name} as {exporter.display_name} and checking it on the test images...", writes=True)
        self.session.track(worker, worker.what)
        self._export_target = target
        worker.finished.connect(self._exported)
        worker.errored.connect(self._export_failed)
        return worker.start()

    def _exported(self, result) -> None:
        if result is None or isinstance(result, (str, Path)):  # the bundle folder, copied
            self.statusBar().showMessage(f"Model exported to {self._export_target}", 8000)
            return
        self.statusBar().showMessage(f"Exported and verified: {result.path}", 8000)
        lines = [result.summary(), f"Checked in: {result.runtime}"] + [f"Note: {n}" for n in result.notes]
        self.last_export = result
        QMessageBox.information(self, "Model exported", "\n\n".join(lines))

    def _export_failed(self, message: str, details: str) -> None:
        errors.show_error(self, "The model could not be exported", message, details)

    REPORT_FILTERS = "PDF document (*.pdf);;Web page, one file (*.html)"

    def export_report(self) -> Worker | None:
        """Write the current run's report as a PDF or a self-contained web page (as ``cnnstudio
        report`` does), in the background."""
        from cnnstudio.core.runs.folder import RunPaths

        run = self.session.current_run
        if not run or not RunPaths(Path(run)).config.is_file():
            errors.show_error(self, "No report to export", "Train a model first, or select a run.")
            return None
        name = Path(run).name
        path, chosen = QFileDialog.getSaveFileName(self, "Export the run report", str(Path.home() / f"{name}-report.pdf"),
                                                   self.REPORT_FILTERS)
        if not path:
            return None
        target = Path(path)
        if target.suffix.lower() not in (".pdf", ".html", ".htm"):
            target = target.with_name(target.name + (".html" if "html" in chosen else ".pdf"))
        worker = Worker(_write_report, run, target).describe(f"Writing the report of {name}...", writes=True)
        self.session.track(worker, worker.what)
        worker.finished.connect(self._report_written)
        worker.errored.connect(self._report_failed)
        return worker.start()

    def _report_written(self, path) -> None:
        self.last_report = Path(path)
        self.statusBar().showMessage(f"Report saved to {path}", 8000)

    def _report_failed(self, message: str, details: str) -> None:
        errors.show_error(self, "The report could not be written", message, details)

    def about_text(self) -> str:
        import PySide6

        info = self.tf_info
        if info is None:
            tensorflow = keras = device = "loading..." if self._tf_worker is not None else "not loaded yet"
        else:
            tensorflow, keras, device = info["tensorflow"], info["keras"], info["device"]
        rows = [
            ("CNN Studio", __version__),
            ("TensorFlow", tensorflow),
            ("Keras", keras),
            ("Qt", f"{qVersion()} (PySide6 {PySide6.__version__})"),
            ("Python", f"{platform.python_version()} ({sys.platform})"),
            ("Compute device", device),
        ]
        table = "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{v}</td></tr>" for k, v in rows)
        return (
            "<p>Train image classifiers from a folder of images: data, model, live training, "
            "evaluation and prediction.</p>"
            f"<table>{table}</table>"
        )

    def show_about(self) -> None:
        if self.tf_info is None:
            self.load_tensorflow_in_background()
        QMessageBox.about(self, "About CNN Studio", self.about_text())

    def show_plugins(self) -> None:
        self.plugins_dialog().exec()

    def plugins_dialog(self):
        from cnnstudio.gui.dialogs.plugins import PluginsDialog

        dialog = PluginsDialog(self.manager, self, reload=self.reload_plugins)
        self.pluginsLoaded.connect(dialog.refresh)
        return dialog

    def reload_plugins(self, disabled=None, then=None) -> str:
        """Register the plugins again (after an install, uninstall, enable or disable); the
        panels refresh from the same registry, no restart needed. The plugins are imported in a
        worker, as at start-up, so a slow plugin never freezes the window; ``then`` runs on the
        GUI thread once the new registry is in place. While a job trains, the change waits until
        it has ended (the job keeps the providers it started with anyway) and the returned line
        says so; "" when it is applying now."""
        if self.plugins_loading():
            self.after_plugins(lambda: self.reload_plugins(disabled, then))
            return "the change applies once the plugins have loaded"
        job = self.session.job
        if self.session.after_job(lambda: self._reload_now(disabled, then)):
            name = job.rstrip(".\u2026")
            return f"the change applies once the running job ({name}) has ended"
        return ""

    def _reload_now(self, disabled=None, then=None) -> None:
        self.discover_plugins(disabled, "Reloading plugins...")
        if then is not None:
            self._after_plugins.append(then)

    # ------------------------------------------------------------------ plugins at start-up

    def discover_plugins(self, disabled=None, what: str = "Loading plugins...") -> Worker:
        """Find and register the installed plugins in a worker; the built-ins (or, on a reload,
        the plugins found before) stay registered meanwhile, so the window is usable. Quitting
        does not wait for it."""
        worker = Worker(lambda: self.manager.discover(disabled)).describe(what)
        worker.quit_waits = False
        self._plugin_worker = worker
        self.session.track(worker, worker.what)
        worker.finished.connect(self._plugins_discovered)
        worker.errored.connect(self._plugins_failed)
        return worker.start()

    def plugins_loading(self) -> bool:
        """Whether the installed plugins are still being looked for."""
        return self._plugin_worker is not None

    def after_plugins(self, fn) -> bool:
        """Run ``fn`` now, or once the installed plugins are registered; True when it waits."""
        if not self.plugins_loading():
            fn()
            return False
        self._after_plugins.append(fn)
        return True

    def _plugins_discovered(self, found) -> None:
        self.manager.adopt(found)
        self.session.registry_reloaded()
        self._plugins_ended()
        self._say_plugin_problems()  # after what waited (an opened project says so too)

    def _plugins_failed(self, message: str, details: str) -> None:
        errors.show_error(self, "Plugins could not be loaded", message, details)
        self._plugins_ended()

    def _plugins_ended(self) -> None:
        self._plugin_worker = None
        waiting, self._after_plugins = self._after_plugins, []
        for fn in waiting:
            fn()
        self.pluginsLoaded.emit()

    # ------------------------------------------------------------------ settings and closing

    def restore_settings(self) -> None:
        """Window size and layout from the last session; a sensible size the first time."""
        settings = QSettings()
        geometry = settings.value("window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            screen = self.screen().availableGeometry()
            width = min(1680, int(screen.width() * 0.92))
            height = min(1050, int(screen.height() * 0.92))
            self.resize(max(width, self.minimumWidth()), max(height, self.minimumHeight()))
            frame = self.frameGeometry()
            frame.moveCenter(screen.center())
            self.move(frame.topLeft())
        state = settings.value("window/state")
        if state is not None:
            self.restoreState(state)

    def save_settings(self) -> None:
        settings = QSettings()
        settings.setValue("window/geometry", self.saveGeometry())
        settings.setValue("window/state", self.saveState())
        if self.session.project_path is not None:
            settings.setValue("project/last", str(self.session.project_path.absolute()))

    def _train_panel_training(self) -> bool:
        train = self._panels.get("train")
        return train is not None and train.is_training()

    def _update_train_actions(self) -> None:
        self.train_action.setEnabled(not self.session.train_refusal())
        self.stop_action.setEnabled(self._train_panel_training())

    def start_training(self) -> None:
        """Ctrl+Enter: start the Train page's training (shown) when its dataset can be trained on
        and no job runs; else nothing (Start says why in its tooltip)."""
        if self.session.train_refusal():
            return
        self.show_page("train").start()

    def stop_training(self) -> None:
        """Esc: stop the Train page's training after the current batch, once the user says so."""
        if not self._train_panel_training():
            return
        answer = widgets.ask(self, "Stop training", "Stop the training after the current batch? "
                             "The model trained so far is kept.",
                             QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                             QMessageBox.StandardButton.No)
        if answer == QMessageBox.StandardButton.Yes and self._train_panel_training():
            self.panel("train").stop()

    def is_training(self) -> bool:
        train = self._panels.get("train")
        experiments = self._panels.get("experiments")
        return bool(train is not None and hasattr(train, "is_training") and train.is_training()) or bool(
            experiments is not None and hasattr(experiments, "is_running") and experiments.is_running())

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if self.is_training():
            answer = widgets.ask(
                self, "Training is running", "A model is training. Stop the training and quit?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
            for key in ("train", "experiments"):
                if key in self._panels and hasattr(self._panels[key], "stop"):
                    self._panels[key].stop()
        if not self._maybe_save():
            event.ignore()
            return
        if not self.finish_background_work():
            event.ignore()
            return
        self.save_settings()
        event.accept()

    def finish_background_work(self) -> bool:
        """Before quitting: what still runs in the background is finished, never cut short.

        A job that writes what the user asked for (an export, a report) is named and the user
        chooses to wait for it or not to quit; then a dialog waits for every job still running
        (a stopped training saving its model, a summary), naming them, with a button not to
        quit after all. True when nothing runs any more.
        """
        from cnnstudio.gui import qthreading

        writing = [w for w in qthreading.pending() if w.writes and w.is_running()]
        if writing:
            answer = widgets.ask(
                self, "Still writing", f"{_names(writing)} {'is' if len(writing) == 1 else 'are'} not finished. "
                "Wait for it and then quit?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Yes,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return False
        if not any(w.is_running() for w in qthreading.pending()):
            return True
        dialog = QProgressDialog("", "Don't Quit", 0, 0, self)
        dialog.setWindowTitle("Finishing before quitting")
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(0)

        def check():
            running = [w for w in qthreading.pending() if w.is_running()]
            if not running:
                dialog.reset()
                dialog.done(QDialog.DialogCode.Accepted)
            else:
                dialog.setLabelText(f"Waiting for: {_names(running)}")

        timer = QTimer(dialog)
        timer.timeout.connect(check)
        timer.start(100)
        check()
        if dialog.result() != QDialog.DialogCode.Accepted:
            dialog.exec()
        timer.stop()
        return not dialog.wasCanceled() and not any(w.is_running() for w in qthreading.pending())

    # ------------------------------------------------------------------ drag and drop

    @staticmethod
    def _dropped_target(mime) -> Path | None:
        """The first dropped local folder or project file, if any."""
        if not mime.hasUrls():
            return None
        for url in mime.urls():
            if not url.isLocalFile():
                continue
            path = Path(url.toLocalFile())
            if path.is_dir() or (path.is_file() and path.name.endswith(PROJECT_SUFFIX)):
                return path
        return None

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if self._dropped_target(event.mimeData()) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        target = self._dropped_target(event.mimeData())
        if target is None:
            event.ignore()
            return
        event.acceptProposedAction()
        if target.is_dir():
            self.open_dataset(target)
        elif self._maybe_save():
            self.open_project(target)

    # ------------------------------------------------------------------ status bar

    def _show_job(self, text: str) -> None:
        self.job_label.setText(text)
        running = bool(self.session.job)
        self.job_bar.setVisible(running)
        if running:
            self.job_bar.setRange(0, 0)  # busy until the job says where it is
        self.job_label.setToolTip("Show the page of the running job" if self.session.job_page else "")
        self.job_label.setCursor(Qt.CursorShape.PointingHandCursor if self.session.job_page
                                 else Qt.CursorShape.ArrowCursor)

    def _show_job_progress(self, text: str, done: int, total: int) -> None:
        self.job_label.setText(text)
        self.job_bar.setVisible(True)
        self.job_bar.setRange(0, max(0, total))
        if total:
            self.job_bar.setValue(max(0, min(done, total)))

    def _go_to_job(self) -> None:
        if self.session.job_page:
            self.show_page(self.session.job_page)


def _names(workers) -> str:
    """'Exporting X' or 'Exporting X; Writing the report of Y', as a dialog says them."""
    return "; ".join(w.what.rstrip(".\u2026") for w in workers)


def _vertical_line() -> QWidget:
    from PySide6.QtWidgets import QFrame

    line = QFrame()
    line.setFrameShape(QFrame.Shape.VLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line

