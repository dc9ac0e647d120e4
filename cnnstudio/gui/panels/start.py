"""The first page: start from the sample, a dataset folder, a project, or a recent project."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from cnnstudio.core.data.sample import describe_sample
from cnnstudio.core.project import PROJECT_SUFFIX
from cnnstudio.gui.widgets import common as widgets


class StartPage(QWidget):
    sampleRequested = Signal()
    openFolderRequested = Signal()
    openProjectRequested = Signal()
    recentRequested = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        title = QLabel("CNN Studio")
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 2.2)
        font.setBold(True)
        title.setFont(font)
        subtitle = widgets.hint_label(
            "Train an image classifier from a folder of images with one sub-folder per class: "
            "check the data, pick a model, watch it train, then evaluate it and drop images on "
            "it to see what it predicts. You can also drop a dataset folder anywhere on this window."
        )

        self.sample_button = self._big_button(
            "Try the sample dataset", "sample", f"{describe_sample()}, made on this computer"
        )
        self.folder_button = self._big_button(
            "Open dataset folder...", "folder", "A folder with one sub-folder of images per class"
        )
        self.project_button = self._big_button(
            "Open project...", "open", f"A saved CNN Studio project ({PROJECT_SUFFIX})"
        )
        self.sample_button.clicked.connect(self.sampleRequested)
        self.folder_button.clicked.connect(self.openFolderRequested)
        self.project_button.clicked.connect(self.openProjectRequested)

        self.recent = QListWidget()
        self.recent.setIconSize(QSize(20, 20))
        self.recent.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.recent.itemClicked.connect(self._open_item)
        self.no_recent = widgets.hint_label("Projects you save appear here.")
        self.no_recent.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)

        actions = QVBoxLayout()
        actions.setSpacing(widgets.SPACING)
        actions.addWidget(widgets.section_label("Start"))
        for button in (self.sample_button, self.folder_button, self.project_button):
            actions.addWidget(button)
        actions.addStretch(1)

        recent = QVBoxLayout()
        recent.setSpacing(widgets.SPACING)
        recent.addWidget(widgets.section_label("Recent projects"))
        recent.addWidget(self.no_recent)
        recent.addWidget(self.recent, 1)

        columns = QHBoxLayout()
        columns.setSpacing(widgets.MARGIN * 3)
        columns.addLayout(actions, 2)
        columns.addLayout(recent, 3)

        inner = QWidget()
        inner.setMaximumWidth(1100)
        inner.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        layout = QVBoxLayout(inner)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(widgets.MARGIN)
        layout.addWidget(title)
        layout.addWidget(subtitle)
        layout.addSpacing(widgets.MARGIN)
        layout.addLayout(columns, 1)

        outer = QHBoxLayout(self)
        outer.setContentsMargins(widgets.MARGIN * 4, widgets.MARGIN * 3, widgets.MARGIN * 4, widgets.MARGIN * 3)
        outer.addStretch(1)
        outer.addWidget(inner, 20)
        outer.addStretch(1)

    @staticmethod
    def _big_button(text: str, icon_name: str, hint: str) -> QPushButton:
        button = QPushButton(widgets.icon(icon_name), f"  {text}")
        button.setIconSize(QSize(24, 24))
        button.setToolTip(hint)
        button.setMinimumHeight(48)
        button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        button.setStyleSheet("QPushButton { text-align: left; padding-left: 12px; }")
        return button

    def set_recent(self, paths: list[str]) -> None:
        self.recent.clear()
        for path in paths:
            p = Path(path)
            item = QListWidgetItem(widgets.icon("project"), p.name.removesuffix(PROJECT_SUFFIX))
            item.setData(Qt.ItemDataRole.UserRole, path)
            item.setToolTip(path)
            if not p.is_file():
                item.setText(f"{item.text()} (missing)")
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
            self.recent.addItem(item)
        self.no_recent.setVisible(not paths)

    def _open_item(self, item: QListWidgetItem) -> None:
        self.recentRequested.emit(item.data(Qt.ItemDataRole.UserRole))
