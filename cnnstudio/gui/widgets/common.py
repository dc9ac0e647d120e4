"""Small widgets the panels share: editors generated from a :class:`Param` schema, questions, icons.

:func:`param_editor` is why a plugin's parameters appear in the window with no GUI code of
their own: every ``Param`` kind maps to one editor with the same small interface (``value()``,
``set_value()``, a ``changed`` signal).
"""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QIcon, QImageReader, QPalette, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QWidget,
)

from cnnstudio.core.io.paths import resources_dir

INT_LIMIT = 2**31 - 1

# One spacing scale for every panel (pixels): between related controls, and around sections.
SPACING = 8
MARGIN = 12


# ----------------------------------------------------------------------------- resources


# The icons' main stroke colour (see resources/icons); redrawn in the highlighted-text colour
# for selected items, where it would otherwise vanish into the highlight.
ICON_COLOUR = "#3d8fd6"
_ICON_SIZES = (16, 20, 22, 24, 32, 48)


def icon(name: str) -> QIcon:
    """An icon from ``resources/icons/<name>.svg`` (an empty icon when it is missing)."""
    path = resources_dir() / "icons" / f"{name}.svg"
    if not path.is_file():
        return QIcon()
    result = QIcon(str(path))
    selected = QApplication.palette().color(QPalette.ColorRole.HighlightedText).name()
    data = QByteArray(path.read_text(encoding="utf-8").replace(ICON_COLOUR, selected).encode())
    for size in _ICON_SIZES:
        buffer = QBuffer(data)
        reader = QImageReader(buffer, b"svg")
        reader.setScaledSize(QSize(size, size))
        image = reader.read()
        if not image.isNull():
            result.addPixmap(QPixmap.fromImage(image), QIcon.Mode.Selected)
    return result


def show_in_folder(path) -> None:
    """Open the folder holding ``path`` (or ``path`` itself when it is a folder) in the file manager."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))


# ----------------------------------------------------------------------------- questions


def ask(parent, title: str, text: str, buttons, default):
    """A modal question; returns the QMessageBox.StandardButton chosen.

    Tests replace this function (``widgets.ask``) to answer without a person.
    """
    box = QMessageBox(QMessageBox.Icon.Question, title, text, buttons, parent)
    box.setDefaultButton(default)
    return QMessageBox.StandardButton(box.exec())


def section_label(text: str) -> QLabel:
    """A bold heading for a group of controls, in the palette's text colour."""
    label = QLabel(text)
    font = label.font()
    font.setBold(True)
    label.setFont(font)
    return label


def hint_label(text: str = "") -> QLabel:
    """A wrapped, dimmed explanatory line (the palette's placeholder colour)."""
    label = QLabel(text)
    label.setWordWrap(True)
    palette = label.palette()
    palette.setColor(label.foregroundRole(), palette.placeholderText().color())
    label.setPalette(palette)
    return label


# A mid red reads on light and dark palettes alike.
ERROR_RED = "#e0443e"


def error_label() -> QLabel:
    """A red, wrapped, selectable label for validation messages shown in place; hidden when empty."""
    label = QLabel()
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setObjectName("errorLabel")
    label.setStyleSheet(f"QLabel#errorLabel {{ color: {ERROR_RED}; }}")
    label.hide()
    return label


def set_error(label: QLabel, text: str) -> None:
    label.setText(text)
    label.setVisible(bool(text))


# ----------------------------------------------------------------------------- parameter editors


class ParamEditor(QWidget):
    """The editor of one parameter. ``changed`` fires on every user edit."""

    changed = Signal()

    def __init__(self, param, parent=None):
        super().__init__(parent)
        self.param = param
        self.setToolTip(param.help or "")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(SPACING // 2)

    def value(self):
        raise NotImplementedError

    def set_value(self, value) -> None:
        raise NotImplementedError

    def _silently(self, widget, fn) -> None:
        blocked = widget.blockSignals(True)
        try:
            fn()
        finally:
            widget.blockSignals(blocked)


class IntEditor(ParamEditor):
    def __init__(self, param, parent=None):
        super().__init__(param, parent)
        self.spin = QSpinBox()
        low = -INT_LIMIT if param.minimum is None else int(math.ceil(param.minimum))
        high = INT_LIMIT if param.maximum is None else int(math.floor(param.maximum))
        self.spin.setRange(low, high)
        self.spin.setSingleStep(int(param.step or 1))
        self.spin.setKeyboardTracking(False)
        self.spin.valueChanged.connect(self.changed)
        self.layout().addWidget(self.spin)

    def value(self):
        return self.spin.value()

    def set_value(self, value) -> None:
        self._silently(self.spin, lambda: self.spin.setValue(int(value)))


def _decimals(step: float | None) -> int:
    """Enough decimals to show a multiple of ``step`` exactly (at least 2)."""
    if not step:
        return 3
    digits = f"{step:.8f}".rstrip("0").partition(".")[2]
    return max(2, len(digits))


class FloatEditor(ParamEditor):
    def __init__(self, param, parent=None):
        super().__init__(param, parent)
        self.spin = QDoubleSpinBox()
        self.spin.setDecimals(_decimals(param.step))
        self.spin.setRange(-1e9 if param.minimum is None else param.minimum,
                           1e9 if param.maximum is None else param.maximum)
        self.spin.setSingleStep(param.step or 0.1)
        self.spin.setKeyboardTracking(False)
        self.spin.valueChanged.connect(self.changed)
        self.layout().addWidget(self.spin)

    def value(self):
        return round(self.spin.value(), self.spin.decimals())

    def set_value(self, value) -> None:
        self._silently(self.spin, lambda: self.spin.setValue(float(value)))


class BoolEditor(ParamEditor):
    def __init__(self, param, parent=None):
        super().__init__(param, parent)
        self.check = QCheckBox()
        self.check.toggled.connect(self.changed)
        self.layout().addWidget(self.check)

    def value(self):
        return self.check.isChecked()

    def set_value(self, value) -> None:
        self._silently(self.check, lambda: self.check.setChecked(bool(value)))


class ChoiceEditor(ParamEditor):
    def __init__(self, param, parent=None):
        super().__init__(param, parent)
        self.combo = QComboBox()
        for choice in param.choices:
            self.combo.addItem(str(choice).replace("_", " "), choice)
        self.combo.currentIndexChanged.connect(self.changed)
        self.layout().addWidget(self.combo)

    def value(self):
        return self.combo.currentData()

    def set_value(self, value) -> None:
        index = self.combo.findData(value)
        self._silently(self.combo, lambda: self.combo.setCurrentIndex(max(index, 0)))


class StrEditor(ParamEditor):
    def __init__(self, param, parent=None):
        super().__init__(param, parent)
        self.line = QLineEdit()
        self.line.editingFinished.connect(self.changed)
        self.layout().addWidget(self.line)

    def value(self):
        return self.line.text()

    def set_value(self, value) -> None:
        self._silently(self.line, lambda: self.line.setText(str(value)))


class WeightsEditor(ParamEditor):
    """ImageNet, none (random) or a local weights file chosen with "File..."."""

    def __init__(self, param, parent=None):
        super().__init__(param, parent)
        self.combo = QComboBox()
        self.combo.addItem("ImageNet (pretrained)", "imagenet")
        self.combo.addItem("Random (not pretrained)", "none")
        self.combo.setItemData(0, "Keras downloads the file once and keeps it in its cache", Qt.ItemDataRole.ToolTipRole)
        self.combo.setItemData(1, "Random initialisation: the architecture without any pretraining",
                               Qt.ItemDataRole.ToolTipRole)
        self.combo.currentIndexChanged.connect(self.changed)
        self.combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.browse = QPushButton("File...")
        self.browse.clicked.connect(self._choose_file)
        self.layout().addWidget(self.combo, 1)
        self.layout().addWidget(self.browse)

    def value(self):
        return self.combo.currentData()

    def set_value(self, value) -> None:
        self._silently(self.combo, lambda: self._select(str(value)))

    def _select(self, value: str) -> None:
        index = self.combo.findData(value)
        if index < 0:
            self.combo.addItem(Path(value).name, value)
            index = self.combo.count() - 1
            self.combo.setItemData(index, value, Qt.ItemDataRole.ToolTipRole)
        self.combo.setCurrentIndex(index)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a weights file", "", "Keras weights (*.weights.h5 *.h5);;All files (*)"
        )
        if path:
            self._select(path)  # emits currentIndexChanged -> changed


EDITORS = {
    "int": IntEditor,
    "float": FloatEditor,
    "bool": BoolEditor,
    "choice": ChoiceEditor,
    "str": StrEditor,
    "weights": WeightsEditor,
}


def param_editor(param, value=None, parent=None) -> ParamEditor:
    """The editor for ``param`` (any kind but ``blocks``), showing ``value`` or the default."""
    try:
        cls = EDITORS[param.kind]
    except KeyError:
        raise ValueError(f"no editor for parameter kind {param.kind!r}") from None
    editor = cls(param, parent)
    editor.set_value(param.default if value is None else value)
    return editor


def param_label(param) -> str:
    return param.label or param.name.replace("_", " ").capitalize()
