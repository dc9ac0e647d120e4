"""Help > Plugins: what is installed, what each plugin adds, what failed, and installing without a terminal.

A plugin wheel (``.whl``) is unpacked into the plugins folder in the user's data folder
(:mod:`cnnstudio.plugins.folder`), no pip needed: the one-folder app, which has no pip, installs
plugins this way, and so does a Python installation. A source archive or a project folder is
installed with ``python -m pip install`` for the interpreter the studio runs in (so the plugin
lands where the studio can import it) in a :class:`QProcess`, its output streamed into the
dialog. Either way the plugin manager then registers everything again into the same registry,
so the Model panel offers the new backbones without a restart. Nothing here can stop the
window: a refused wheel, a failing pip run or a broken plugin is a line in the list and a
message, never an exception.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import shiboken6
from PySide6.QtCore import QProcess, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cnnstudio.gui.dialogs import errors
from cnnstudio.gui.widgets import common as widgets
from cnnstudio.plugins import folder as plugin_folder
from cnnstudio.plugins.settings import set_enabled

PACKAGE_FILTER = "Python packages (*.whl *.tar.gz *.zip);;Plugin wheels (*.whl);;All files (*)"
WHEEL_FILTER = "Plugin wheels (*.whl)"
STATUS_TEXT = {"ok": "OK", "disabled": "Disabled", "error": "Error"}
COLUMNS = ("Plugin", "Version", "Origin", "Status", "Adds")


def pip_available(python: str) -> bool:
    """Whether ``python -m pip`` can run: not in a bundled app, which has no pip inside."""
    if getattr(sys, "frozen", False):
        return False
    return python != sys.executable or importlib.util.find_spec("pip") is not None


def is_project_folder(path: Path) -> bool:
    return (path / "pyproject.toml").is_file() or (path / "setup.py").is_file()


def _summary(provides: list[str]) -> str:
    counts: dict[str, int] = {}
    for item in provides:
        kind = item.split(":", 1)[0]
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in counts.items())


class PluginsDialog(QDialog):
    """Every plugin with name, version, origin, what it adds and its status; enable, disable,
    install and uninstall.

    ``reload`` is called after anything that changes what is registered (an install, an
    uninstall, enabling or disabling) with the new set of disabled names; the main window
    reloads the plugin manager and refreshes its panels. ``python`` is the interpreter whose
    pip installs plugins: the studio's own.
    """

    reloaded = Signal()
    pipFinished = Signal(int)  # pip's exit code

    def __init__(self, manager, parent=None, reload=None, python: str | None = None):
        super().__init__(parent)
        self.manager = manager
        self._reload = reload
        self.python = python or sys.executable
        self.process: QProcess | None = None
        self._pip_action = ""
        self._summary = self._note = ""
        self.setWindowTitle("Plugins")
        self.resize(900, 560)

        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setAlternatingRowColors(True)
        self.tree.setRootIsDecorated(True)
        self.tree.currentItemChanged.connect(self._show_details)

        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.details.setPlaceholderText("Select a plugin to see what it adds and, for a failed one, "
                                        "the full traceback.")

        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log.setPlaceholderText("pip's output appears here while a plugin installs or uninstalls.")
        self.log.setMaximumBlockCount(5000)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumHeight(14)
        self.busy.setTextVisible(False)
        self.busy.hide()

        self.toggle_button = QPushButton("Disable")
        self.toggle_button.setToolTip("Turn the selected plugin off or on; remembered across restarts")
        self.toggle_button.clicked.connect(self.toggle_selected)
        self.install_file_button = QPushButton("Install from File\u2026")
        self.install_file_button.setToolTip("Install a plugin from a wheel (.whl), unpacked into the plugins folder, "
                                            "or from a source archive (.tar.gz) with pip")
        self.install_file_button.clicked.connect(self._choose_file)
        self.install_folder_button = QPushButton("Install from Folder\u2026")
        self.install_folder_button.setToolTip("Install a plugin from a project folder (with a pyproject.toml)")
        self.install_folder_button.clicked.connect(self._choose_folder)
        self.uninstall_button = QPushButton("Uninstall")
        self.uninstall_button.setToolTip("Remove the selected plugin: from the plugins folder, or its package with pip")
        self.uninstall_button.clicked.connect(self.uninstall_selected)
        if not pip_available(self.python):
            self.install_file_button.setToolTip("Install a plugin from its wheel (.whl): this build of CNN Studio "
                                                "has no pip, so the wheel must be pure Python")
            self.install_folder_button.setToolTip("This build of CNN Studio has no pip; install the plugin's "
                                                  "wheel (.whl) with Install from File instead")

        actions = QHBoxLayout()
        for button in (self.toggle_button, self.uninstall_button):
            actions.addWidget(button)
        actions.addStretch(1)
        for button in (self.install_file_button, self.install_folder_button):
            actions.addWidget(button)

        self.status = widgets.hint_label()
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.tree, 3)
        top_layout.addLayout(actions)
        top_layout.addWidget(self.status)
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.details)
        log_box = QWidget()
        log_layout = QVBoxLayout(log_box)
        log_layout.setContentsMargins(0, 0, 0, 0)
        log_layout.addWidget(QLabel("pip"))
        log_layout.addWidget(self.log, 1)
        log_layout.addWidget(self.busy)
        bottom.addWidget(log_box)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(bottom)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter, 1)
        layout.addWidget(buttons)
        self.refresh()

    # ------------------------------------------------------------------ the list

    def refresh(self, select: str | None = None) -> None:
        """Fill the list from the manager (after a reload too), keeping the selection."""
        current = select or (self.selected().name if self.selected() else None)
        self.tree.clear()
        bold = QFont(self.tree.font())
        bold.setBold(True)
        for info in self.manager.plugins:
            item = QTreeWidgetItem([
                info.name, info.version or "", self._origin(info), STATUS_TEXT.get(info.status, info.status),
                _summary(info.provides),
            ])
            item.setData(0, Qt.ItemDataRole.UserRole, info)
            if info.status == "error":
                for column in range(len(COLUMNS)):
                    item.setForeground(column, QColor(widgets.ERROR_RED))
                item.setFont(3, bold)
                item.setToolTip(3, "; ".join(e.cause for e in info.errors))
            elif info.status == "disabled":
                for column in range(len(COLUMNS)):
                    item.setForeground(column, self.palette().placeholderText())
            for provided in info.provides:
                child = QTreeWidgetItem([provided.replace(":", " ", 1)])
                child.setData(0, Qt.ItemDataRole.UserRole, info)
                item.addChild(child)
            for warning in info.warnings:
                child = QTreeWidgetItem([f"warning: {warning}"])
                child.setToolTip(0, warning)
                child.setData(0, Qt.ItemDataRole.UserRole, info)
                item.addChild(child)
            for error in info.errors:
                child = QTreeWidgetItem([f"error: {error.cause}"])
                child.setForeground(0, QColor(widgets.ERROR_RED))
                child.setToolTip(0, error.cause)
                child.setData(0, Qt.ItemDataRole.UserRole, info)
                item.addChild(child)
            self.tree.addTopLevelItem(item)
            item.setExpanded(bool(info.errors or info.warnings))  # only takes effect once the item is in the tree
            for i in range(item.childCount()):  # a long error reads across the row
                item.child(i).setFirstColumnSpanned(True)
            if info.name == current:
                self.tree.setCurrentItem(item)
        # The name column fits the plugins' names, not their (spanning) error lines.
        metrics = self.tree.fontMetrics()
        names = [self.tree.topLevelItem(i).text(0) for i in range(self.tree.topLevelItemCount())]
        self.tree.setColumnWidth(0, max([metrics.horizontalAdvance(n) for n in names] + [120])
                                 + self.tree.indentation() + 24)
        for column in range(1, len(COLUMNS)):
            self.tree.resizeColumnToContents(column)
        if self.tree.currentItem() is None and self.tree.topLevelItemCount():
            self.tree.setCurrentItem(self.tree.topLevelItem(0))
        failed = sum(1 for info in self.manager.plugins if info.status == "error")
        total = len(self.manager.plugins)
        loading = not getattr(self.manager, "complete", True)
        self._summary = (f"{total} plugin{'s' if total != 1 else ''}"
                         + (f", {failed} with errors (select one for the traceback)" if failed else "")
                         + ("; looking for the installed plugins\u2026" if loading else ""))
        self._show_status()
        self._update_buttons()

    def _say(self, note: str) -> None:
        """Show what the last action did (kept when the list refreshes), after the summary."""
        self._note = note
        self._show_status()

    def _show_status(self) -> None:
        self.status.setText(f"{self._summary} \u2014 {self._note}" if self._note else self._summary)

    @staticmethod
    def _origin(info) -> str:
        if info.origin == "built-in":
            return "built-in"
        if info.origin == "folder":
            return f"plugins folder {info.distribution}" if info.distribution else "plugins folder"
        return f"package {info.distribution}" if info.distribution else "package"

    def item_for(self, name: str) -> QTreeWidgetItem | None:
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            if item.text(0) == name:
                return item
        return None

    def selected(self):
        item = self.tree.currentItem() if hasattr(self, "tree") else None
        return item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None

    def _show_details(self, *_args) -> None:
        info = self.selected()
        self._update_buttons()
        if info is None:
            self.details.clear()
            return
        lines = [
            f"{info.name} {info.version or ''}".rstrip(),
            f"origin: {self._origin(info)}",
            f"status: {STATUS_TEXT.get(info.status, info.status)}",
        ]
        if getattr(info, "folder", None):
            lines.append(f"folder: {info.folder}")
        lines += [f"unavailable: {line}" for line in getattr(info, "unavailable", [])]
        if info.provides:
            lines.append("adds:")
            lines += [f"  {p.replace(':', ' ', 1)}" for p in info.provides]
        lines += [f"warning: {w}" for w in info.warnings]
        for error in info.errors:
            lines += ["", f"error: {error.cause}"]
            if error.traceback:
                lines += ["", error.traceback.rstrip()]
        self.details.setPlainText("\n".join(lines))

    def _update_buttons(self) -> None:
        info = self.selected()
        package = info is not None and info.origin != "built-in"
        busy = self.process is not None
        self.toggle_button.setEnabled(package and not busy)
        self.toggle_button.setText("Enable" if package and info.status == "disabled" else "Disable")
        can_pip = pip_available(self.python) and not busy
        in_folder = package and info.origin == "folder"
        self.uninstall_button.setEnabled(package and bool(info.distribution) and (can_pip or (in_folder and not busy)))
        self.install_file_button.setEnabled(not busy)
        self.install_folder_button.setEnabled(can_pip)

    # ------------------------------------------------------------------ enable / disable

    def toggle_selected(self) -> None:
        info = self.selected()
        if info is None or info.origin == "built-in":
            return
        enable = info.status == "disabled"
        disabled = set_enabled(info.name, enable)
        done = f"{info.name} {'enabled' if enable else 'disabled'}; remembered across restarts"
        self._say(f"{done}; reloading the plugins\u2026")
        later = self._do_reload(disabled, then=lambda: self._say(done))
        if later:
            self._say(f"{done}; {later}")

    def _do_reload(self, disabled=None, then=None) -> str:
        """Reload the plugins, then refresh the list and call ``then``; returns the line saying
        when the change applies, if not now (the window defers it while a job trains or the
        plugins are still loading). The window imports them in a worker, so ``then`` may run
        later, once the dialog is gone: it is skipped then."""
        name = self.selected().name if self.selected() else None

        def applied() -> None:
            if not shiboken6.isValid(self):
                return
            self.busy.hide()
            self.refresh(select=name)
            self.reloaded.emit()
            if then is not None:
                then()

        later = ""
        try:
            if self._reload is not None:
                self.busy.show()
                later = self._reload(disabled, applied) or ""
                if later:
                    self.busy.hide()
            else:
                self.manager.reload(disabled)
                applied()
        except Exception as exc:  # a bug in the studio's own plugin code: say so, keep the dialog
            errors.show_error(self, "Plugins could not be reloaded", str(exc))
            applied()
        return later

    # ------------------------------------------------------------------ pip

    def _choose_file(self) -> None:
        filters = PACKAGE_FILTER if pip_available(self.python) else WHEEL_FILTER
        path, _ = QFileDialog.getOpenFileName(self, "Install a plugin package", str(Path.home()), filters)
        if path:
            self.install(path)

    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Install a plugin project folder", str(Path.home()))
        if path:
            self.install(path)

    def install(self, path) -> bool:
        """Unpack a wheel into the plugins folder, or ``pip install PATH`` (an sdist or a project
        folder); False when refused."""
        path = Path(path)
        if not path.exists():
            errors.show_error(self, "Not installed", f"{path}: no such file or folder")
            return False
        if path.is_file() and path.name.endswith(".whl"):
            return self.install_wheel(path)
        if not pip_available(self.python):
            errors.show_error(self, "Not installed",
                              f"{path}: installing this needs pip, which this build of CNN Studio lacks; "
                              "install the plugin's wheel (.whl) instead")
            return False
        if path.is_dir() and not is_project_folder(path):
            errors.show_error(self, "Not installed",
                              f"{path}: not a Python project folder (no pyproject.toml or setup.py)")
            return False
        if path.is_file() and not path.name.endswith((".whl", ".tar.gz", ".zip")):
            errors.show_error(self, "Not installed",
                              f"{path}: not a Python package (expected a .whl, .tar.gz or .zip)")
            return False
        return self._run_pip("install", ["install", str(path)], f"Installing {path.name}")

    def install_wheel(self, path) -> bool:
        """Unpack the plugin wheel at ``path`` into the plugins folder and reload the plugins."""
        if self.process is not None:
            return False
        before = {info.name for info in self.manager.plugins if info.status != "error"}
        try:
            installed = plugin_folder.install_wheel(path)
        except plugin_folder.NeedsPip as exc:
            if pip_available(self.python):  # a Python installation: pip can do what the folder cannot
                answer = widgets.ask(
                    self, "Install with pip?",
                    f"{exc}\n\nInstall it with pip into this Python installation instead? pip installs "
                    "compiled code and downloads the packages it needs.",
                    QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes,
                )
                if answer == QMessageBox.StandardButton.Yes:
                    return self._run_pip("install", ["install", str(path)], f"Installing {Path(path).name}")
            self._say(f"{Path(path).name} not installed")
            errors.show_error(self, "Not installed", str(exc))
            return False
        except plugin_folder.PluginFolderError as exc:
            self._say(f"{Path(path).name} not installed")
            errors.show_error(self, "Not installed", str(exc))
            return False
        self.log.clear()
        self.log.appendPlainText(installed.summary())
        what = f"{installed.name} {installed.version}"
        if installed.replaced is not None:
            what += f" (replacing {installed.replaced})"

        def applied() -> None:
            after = {info.name for info in self.manager.plugins if info.status != "error"}
            added = sorted(after - before)
            failed = [info.name for info in self.manager.plugins
                      if info.name in installed.plugins and info.status == "error"]
            line = f"Installed {what} into the plugins folder"
            if added:
                line += f": new plugin{'s' if len(added) != 1 else ''} {', '.join(added)}"
            if failed:
                line += f"; {', '.join(failed)} did not load (select it for why)"
            self._say("; ".join([line, *installed.notes]))

        self._say(f"Installed {what}; reloading the plugins\u2026")
        later = self._do_reload(then=applied)
        if later:
            self._say(f"Installed {what} into the plugins folder; {later}")
        return True

    def _confirm_uninstall(self, question: str) -> bool:
        answer = widgets.ask(self, "Uninstall plugin", question,
                             QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                             QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def _uninstall_from_folder(self, info) -> bool:
        if not self._confirm_uninstall(f"Remove {info.distribution} (plugin {info.name}) from the plugins folder?"):
            return False
        try:
            plugin_folder.uninstall(info.distribution)
        except plugin_folder.PluginFolderError as exc:
            errors.show_error(self, "Not uninstalled", str(exc))
            return False
        done = f"Removed {info.distribution} from the plugins folder; its backbones and formats are gone"
        self._say(f"{done}; reloading the plugins\u2026")
        later = self._do_reload(then=lambda: self._say(done))
        if later:
            self._say(f"Removed {info.distribution} from the plugins folder; {later}")
        return True

    def uninstall_selected(self) -> bool:
        info = self.selected()
        if info is None or info.origin == "built-in" or not info.distribution:
            return False
        if info.origin == "folder":
            return self._uninstall_from_folder(info)
        if not pip_available(self.python):
            return False
        if not self._confirm_uninstall(
                f"Uninstall the package {info.distribution} (plugin {info.name}) from this Python installation?"):
            return False
        return self._run_pip("uninstall", ["uninstall", "-y", info.distribution], f"Uninstalling {info.distribution}")

    def _run_pip(self, action: str, args: list[str], title: str) -> bool:
        if self.process is not None:
            return False
        self._pip_action = action
        self.log.clear()
        command = [self.python, "-m", "pip", *args, "--disable-pip-version-check", "--no-input"]
        self.log.appendPlainText("$ " + " ".join(command))
        process = QProcess(self)
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        process.readyReadStandardOutput.connect(self._read_output)
        process.finished.connect(self._pip_finished)
        process.errorOccurred.connect(self._pip_error)
        self.process = process
        self.busy.show()
        self._say(f"{title}\u2026")
        self._update_buttons()
        process.start(command[0], command[1:])
        return True

    def _read_output(self) -> None:
        if self.process is None:
            return
        text = bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
        for line in text.rstrip("\n").splitlines():
            self.log.appendPlainText(line)

    def _pip_error(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart and self.process is not None:
            self.log.appendPlainText(f"{self.python}: could not start ({self.process.errorString()})")
            self._pip_finished(-1, QProcess.ExitStatus.CrashExit)

    def _pip_finished(self, code: int, _status=None) -> None:
        if self.process is None:
            return
        self._read_output()
        self.process.deleteLater()
        self.process = None
        self.busy.hide()
        action = self._pip_action
        before = {info.name for info in self.manager.plugins}
        if code == 0:
            def applied() -> None:
                after = {info.name for info in self.manager.plugins}
                if action == "install":
                    added = sorted(after - before)
                    self._say(
                        f"Installed: new plugin{'s' if len(added) != 1 else ''} {', '.join(added)}" if added
                        else "Installed; it adds no new plugin (was it installed already, or is it not a "
                             "CNN Studio plugin?)")
                else:
                    self._say("Uninstalled; its backbones and formats are gone")
                if not later:  # else said so already
                    self.pipFinished.emit(code)

            self._say("Reloading the plugins\u2026")
            later = ""
            later = self._do_reload(then=applied)
            if later:
                self._say(f"{'Installed' if action == 'install' else 'Uninstalled'}; {later}")
                self.pipFinished.emit(code)
            return
        self._update_buttons()
        tail = "\n".join(self.log.toPlainText().splitlines()[-12:])
        self._say(f"pip {action} failed (exit code {code}); see its output")
        errors.show_error(self, f"pip {action} failed", f"pip exited with code {code}.", tail)
        self.pipFinished.emit(code)
