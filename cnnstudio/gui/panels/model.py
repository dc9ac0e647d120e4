"""The Model panel: pick a preset or backbone, edit its parameters, see the model it builds.

The form is generated from the provider's :class:`Param` schema (and the head's and
augmentation's), so a plugin's backbone or block gets its editor with no GUI code of its own.
Every edit is validated at once (the message shows in place; an invalid spec is not applied)
and, 300 ms after the last edit, the model is built in a worker for the live summary.
"""

from __future__ import annotations

import copy
import sys

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QFileDialog,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cnnstudio.core.errors import SpecError, StudioError
from cnnstudio.core.model.summary import summarize
from cnnstudio.gui.dialogs import errors
from cnnstudio.gui.qthreading import Worker
from cnnstudio.gui.widgets import common as widgets

SUMMARY_DELAY_MS = 300
MAX_INPUT_SIZE = 2048


# ----------------------------------------------------------------------------- the block editor


class BlockEditor(QWidget):
    """A table of blocks (one row each) with add, remove and reorder; cells generated from each
    block provider's parameter schema, so a plugin's block gets its own columns."""

    changed = Signal()

    def __init__(self, registry, parent=None):
        super().__init__(parent)
        self.registry = registry
        self._columns: list[str] = []  # parameter names, in the order first seen
        labels: dict[str, str] = {}
        for provider in registry.blocks.values():
            for param in provider.params:
                if param.name not in labels:
                    labels[param.name] = widgets.param_label(param)
                    self._columns.append(param.name)
        self.table = QTableWidget(0, 1 + len(self._columns))
        self.table.setHorizontalHeaderLabels(["Block"] + [labels[c] for c in self._columns])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 20)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.currentCellChanged.connect(lambda *_: self._update_buttons())
        self._blocks: list[dict] = []
        self._editors: list[dict[str, widgets.ParamEditor]] = []

        self.add_button = QPushButton(widgets.icon("add"), "Add")
        self.remove_button = QPushButton(widgets.icon("remove"), "Remove")
        self.up_button = QPushButton(widgets.icon("up"), "Up")
        self.down_button = QPushButton(widgets.icon("down"), "Down")
        self.add_button.setToolTip("Add a block after the selected one (a copy of it)")
        self.add_button.clicked.connect(self.add_block)
        self.remove_button.clicked.connect(self.remove_block)
        self.up_button.clicked.connect(lambda: self.move_block(-1))
        self.down_button.clicked.connect(lambda: self.move_block(1))
        buttons = QHBoxLayout()
        buttons.setSpacing(widgets.SPACING // 2)
        for b in (self.add_button, self.remove_button, self.up_button, self.down_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(widgets.SPACING // 2)
        layout.addWidget(self.table)
        layout.addLayout(buttons)

    # -- value

    def value(self) -> list[dict]:
        out = []
        for block, editors in zip(self._blocks, self._editors, strict=True):
            out.append({"type": block["type"], **{name: e.value() for name, e in editors.items()}})
        return out

    def set_value(self, blocks: list[dict]) -> None:
        self._blocks = [dict(b) for b in blocks]
        self._rebuild()

    # -- editing

    def add_block(self) -> None:
        blocks = self.value()
        row = self.table.currentRow()
        if blocks:
            at = row if row >= 0 else len(blocks) - 1
            new = copy.deepcopy(blocks[at])
        else:
            at = -1
            new = {"type": next(iter(self.registry.blocks))}
        blocks.insert(at + 1, new)
        self._set_and_emit(blocks, at + 1)

    def remove_block(self) -> None:
        blocks = self.value()
        row = self.table.currentRow()
        if 0 <= row < len(blocks):
            del blocks[row]
            self._set_and_emit(blocks, min(row, len(blocks) - 1))

    def move_block(self, delta: int) -> None:
        blocks = self.value()
        row = self.table.currentRow()
        to = row + delta
        if 0 <= row < len(blocks) and 0 <= to < len(blocks):
            blocks[row], blocks[to] = blocks[to], blocks[row]
            self._set_and_emit(blocks, to)

    def _set_and_emit(self, blocks: list[dict], current: int) -> None:
        self.set_value(blocks)
        if current >= 0:
            self.table.setCurrentCell(current, 0)
        self.changed.emit()

    def _rebuild(self) -> None:
        table = self.table
        current = table.currentRow()
        table.setRowCount(0)
        table.setRowCount(len(self._blocks))
        self._editors = []
        for row, block in enumerate(self._blocks):
            provider = self.registry.blocks.get(block["type"])
            type_combo = QComboBox()
            for block_id, p in self.registry.blocks.items():
                type_combo.addItem(p.display_name, block_id)
            if provider is None:  # a block type whose plugin is gone: shown, and refused by validation
                type_combo.addItem(f"{block['type']} (unknown)", block["type"])
            type_combo.setCurrentIndex(type_combo.findData(block["type"]))
            type_combo.currentIndexChanged.connect(lambda _i, r=row, c=type_combo: self._change_type(r, c))
            table.setCellWidget(row, 0, type_combo)
            editors: dict[str, widgets.ParamEditor] = {}
            params = {p.name: p for p in provider.params} if provider else {}
            for column, name in enumerate(self._columns, 1):
                if name in params:
                    editor = widgets.param_editor(params[name], block.get(name))
                    editor.changed.connect(self.changed)
                    editor.layout().setContentsMargins(2, 1, 2, 1)
                    table.setCellWidget(row, column, editor)
                    editors[name] = editor
                else:
                    item = QTableWidgetItem("")
                    item.setFlags(Qt.ItemFlag.NoItemFlags)
                    table.setItem(row, column, item)
            self._editors.append(editors)
            table.setVerticalHeaderItem(row, QTableWidgetItem(str(row + 1)))
        if 0 <= current < len(self._blocks):
            table.setCurrentCell(current, 0)
        # Every row whole: as tall as its editors (a combo box is taller than a text row), room
        # kept for the horizontal scroll bar a narrow window shows.
        table.resizeRowsToContents()
        row = max([table.rowHeight(r) for r in range(table.rowCount())] + [table.verticalHeader().defaultSectionSize()])
        table.setFixedHeight(row * max(len(self._blocks), 2) + table.horizontalHeader().sizeHint().height()
                             + table.horizontalScrollBar().sizeHint().height() + 2 * table.frameWidth())
        table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self._update_buttons()

    def _change_type(self, row: int, combo: QComboBox) -> None:
        blocks = self.value()
        blocks[row] = {"type": combo.currentData()}
        self._set_and_emit(blocks, row)

    def _update_buttons(self) -> None:
        row = self.table.currentRow()
        n = len(self._blocks)
        self.remove_button.setEnabled(0 <= row < n and n > 1)
        self.up_button.setEnabled(0 < row < n)
        self.down_button.setEnabled(0 <= row < n - 1)

    def editor(self, row: int, name: str) -> widgets.ParamEditor:
        return self._editors[row][name]


# ----------------------------------------------------------------------------- the panel


class ModelPanel(QWidget):
    summaryReady = Signal(dict)  # the summary of the spec now in the session
    summaryFailed = Signal(str)
    weightsReady = Signal()  # the ImageNet weights were downloaded, or a weights file checked and chosen
    weightsFailed = Signal(str)  # why not, as shown in place

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.registry = session.registry
        self.summary: dict | None = None
        self._applying = False
        self._summary_worker: Worker | None = None
        self._summary_stale = False
        self._summarized_key = None
        self._backbone: str | None = None
        self.param_editors: dict[str, widgets.ParamEditor] = {}
        self.block_editor: BlockEditor | None = None

        self._build_chooser()
        self._build_form()
        self._build_summary()
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.form_scroll)
        splitter.addWidget(self.summary_box)
        splitter.setChildrenCollapsible(False)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([640, 460])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(widgets.MARGIN, widgets.MARGIN, widgets.MARGIN, widgets.MARGIN)
        layout.setSpacing(widgets.SPACING)
        layout.addLayout(self.chooser_row)
        layout.addWidget(self.description)
        layout.addWidget(self.error)
        layout.addWidget(splitter, 1)

        self._timer = QTimer(self, singleShot=True, interval=SUMMARY_DELAY_MS)
        self._timer.timeout.connect(self.build_summary)
        session.specChanged.connect(self._on_spec)
        session.datasetChanged.connect(self._schedule_summary)
        session.datasetChanged.connect(self._show_transfer)
        session.configChanged.connect(self._on_config)
        session.registryChanged.connect(self._on_registry)
        self._show_spec(session.spec)
        self._schedule_summary()

    # ------------------------------------------------------------------ building

    def _build_chooser(self) -> None:
        self.chooser = QComboBox()
        self.chooser.setMinimumContentsLength(30)
        self._fill_chooser()
        self.chooser.activated.connect(self._on_chosen)
        self.chooser_row = QHBoxLayout()
        self.chooser_row.setSpacing(widgets.SPACING)
        self.chooser_row.addWidget(QLabel("Model"))
        self.chooser_row.addWidget(self.chooser)
        self.chooser_row.addStretch(1)
        self.description = widgets.hint_label()
        self.error = widgets.error_label()

    def _build_form(self) -> None:
        self.form_widget = QWidget()
        self.form_layout = QVBoxLayout(self.form_widget)
        self.form_layout.setContentsMargins(0, 0, widgets.MARGIN, 0)
        self.form_layout.setSpacing(widgets.SPACING)

        self.backbone_title = widgets.section_label("Backbone")
        self.backbone_form = QFormLayout()
        self._tune_form(self.backbone_form)
        self.blocks_holder = QVBoxLayout()

        self.input_size = QSpinBox()
        self.input_size.setRange(1, MAX_INPUT_SIZE)
        self.input_size.setSuffix(" px")
        self.input_size.setKeyboardTracking(False)
        self.input_size.setToolTip("Images are resized to this square size before the model sees them")
        self.input_size.valueChanged.connect(self._on_edit)
        self.input_hint = widgets.hint_label()
        self.input_hint.setWordWrap(False)
        size_row = QHBoxLayout()
        size_row.addWidget(self.input_size)
        size_row.addWidget(self.input_hint, 1)
        self.backbone_form.addRow("Input size", size_row)

        from cnnstudio.core.model.spec import AugmentSpec, HeadSpec

        self.head_editors = {p.name: widgets.param_editor(p) for p in HeadSpec.PARAMS}
        self.dense_edit = QLineEdit()
        self.dense_edit.setPlaceholderText("e.g. 256, 128 (empty: none)")
        self.dense_edit.setToolTip("Units of each dense (ReLU) layer before the output layer, comma separated")
        self.dense_edit.editingFinished.connect(self._on_dense_edited)
        head_form = QFormLayout()
        self._tune_form(head_form)
        head_form.addRow(widgets.param_label(HeadSpec.PARAMS[0]), self.head_editors["pooling"])
        head_form.addRow("Dense layers", self.dense_edit)
        for p in HeadSpec.PARAMS[1:]:
            head_form.addRow(widgets.param_label(p), self.head_editors[p.name])
        for e in self.head_editors.values():
            e.changed.connect(self._on_edit)

        self.aug_editors = {p.name: widgets.param_editor(p) for p in AugmentSpec.PARAMS}
        aug_form = QFormLayout()
        self._tune_form(aug_form)
        for p in AugmentSpec.PARAMS:
            label = QLabel(widgets.param_label(p))
            label.setToolTip(p.help)
            aug_form.addRow(label, self.aug_editors[p.name])
            self.aug_editors[p.name].changed.connect(self._on_edit)

        self._build_transfer()
        self.form_layout.addWidget(self.backbone_title)
        self.form_layout.addLayout(self.backbone_form)
        self.form_layout.addLayout(self.blocks_holder)
        self.form_layout.addWidget(self.transfer_box)
        self.form_layout.addSpacing(widgets.SPACING)
        self.form_layout.addWidget(_line())
        self.form_layout.addWidget(widgets.section_label("Head"))
        self.form_layout.addLayout(head_form)
        self.form_layout.addSpacing(widgets.SPACING)
        self.form_layout.addWidget(_line())
        self.form_layout.addWidget(widgets.section_label("Augmentation (training only)"))
        self.form_layout.addLayout(aug_form)
        self.form_layout.addStretch(1)

        self.form_scroll = QScrollArea()
        self.form_scroll.setWidgetResizable(True)
        self.form_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.form_scroll.setWidget(self.form_widget)

    def _build_transfer(self) -> None:
        """Mode, fine-tuning settings, bottleneck cache, the weights note and the suggested mode."""
        from cnnstudio.core.model.transfer import MODE_LABELS

        self.transfer_box = QWidget()
        box = QVBoxLayout(self.transfer_box)
        box.setContentsMargins(0, widgets.SPACING, 0, 0)
        box.setSpacing(widgets.SPACING)
        box.addWidget(_line())
        box.addWidget(widgets.section_label("Transfer learning"))
        form = QFormLayout()
        self._tune_form(form)
        self.mode_combo = QComboBox()
        for mode, label in MODE_LABELS.items():
            self.mode_combo.addItem(label, mode)
        self.mode_combo.setToolTip("How the pretrained backbone is used; see the suggestion below")
        self.mode_combo.currentIndexChanged.connect(self._on_transfer_edit)
        form.addRow("Mode", self.mode_combo)
        self.mode_hint = widgets.hint_label()
        form.addRow("", self.mode_hint)
        self.ft_blocks = QSpinBox()
        self.ft_blocks.setRange(1, 64)
        self.ft_blocks.setToolTip("Blocks of the base, counted from the top, trained in the second phase")
        self.ft_epochs = QSpinBox()
        self.ft_epochs.setRange(1, 10_000)
        self.ft_epochs.setToolTip("Epochs of the fine-tuning phase, after the head's epochs")
        self.ft_lr = QDoubleSpinBox()
        self.ft_lr.setDecimals(6)
        self.ft_lr.setRange(1e-6, 1.0)
        self.ft_lr.setSingleStep(1e-5)
        for w in (self.ft_blocks, self.ft_epochs, self.ft_lr):
            w.setKeyboardTracking(False)
            w.valueChanged.connect(self._on_transfer_edit)
        self.ft_rows = [(QLabel("Unfreeze top blocks"), self.ft_blocks), (QLabel("Fine-tuning epochs"), self.ft_epochs),
                        (QLabel("Fine-tuning rate"), self.ft_lr)]
        for label, w in self.ft_rows:
            form.addRow(label, w)
        self.bottleneck = QCheckBox("Compute the base's features once (bottleneck cache)")
        self.bottleneck.setToolTip("The frozen base sees each image once; the head then trains on the cached "
                                   "features, many times faster. Off with augmentation.")
        self.bottleneck.toggled.connect(self._on_transfer_edit)
        form.addRow("", self.bottleneck)
        self.bottleneck_note = widgets.hint_label()
        form.addRow("", self.bottleneck_note)
        box.addLayout(form)
        self.weights_note = QLabel()
        self.weights_note.setWordWrap(True)
        box.addWidget(self.weights_note)
        self._build_weights_actions(box)
        self.transfer_box.setVisible(False)

    def _build_weights_actions(self, box: QVBoxLayout) -> None:
        """Where the pretrained weights come from, settled in place: download them now, choose a
        weights file, or train the whole network from random weights."""
        self._weights_worker: Worker | None = None
        self.download_button = QPushButton(widgets.icon("download"), "Download now")
        self.download_button.setToolTip("Fetch the ImageNet weights into Keras' cache now, with progress")
        self.download_button.clicked.connect(self.download_weights)
        self.file_button = QPushButton(widgets.icon("folder"), "Choose weights file\u2026")
        self.file_button.setToolTip("A .weights.h5 / .h5 file of the base, checked against the architecture")
        self.file_button.clicked.connect(self._choose_weights_file)
        self.random_button = QPushButton("Random weights")
        self.random_button.setToolTip("Train the whole network from random weights (not pretrained)")
        self.random_button.clicked.connect(self.use_random_weights)
        row = QHBoxLayout()
        row.setSpacing(widgets.SPACING)
        for button in (self.download_button, self.file_button, self.random_button):
            row.addWidget(button)
        row.addStretch(1)
        self.weights_progress = QProgressBar()
        self.weights_progress.setFormat("%p %")
        self.weights_progress.hide()
        self.weights_error = widgets.error_label()
        self.weights_actions = QWidget()
        col = QVBoxLayout(self.weights_actions)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(widgets.SPACING // 2)
        col.addLayout(row)
        col.addWidget(self.weights_progress)
        col.addWidget(self.weights_error)
        box.addWidget(self.weights_actions)

    def _show_transfer(self) -> None:
        """Show the transfer section for a pretrained backbone, filled from the session's config."""
        from cnnstudio.core.model.transfer import recommend_mode
        from cnnstudio.core.model.weights import describe, keras_cache_dir

        provider = self.registry.backbones.get(self.session.spec.backbone)
        pretrained = provider is not None and provider.pretrained
        self.transfer_box.setVisible(pretrained)
        if not pretrained:
            return
        config = self.session.train_config
        mode = config.mode or "extract"
        self._set_silently(self.mode_combo, lambda: self.mode_combo.setCurrentIndex(self.mode_combo.findData(mode)))
        self._set_silently(self.ft_blocks, lambda: self.ft_blocks.setValue(config.finetune_blocks))
        self._set_silently(self.ft_epochs, lambda: self.ft_epochs.setValue(config.finetune_epochs))
        self._set_silently(self.ft_lr, lambda: self.ft_lr.setValue(config.finetune_learning_rate))
        self.ft_lr.setToolTip(f"{config.finetune_optimizer.upper()}"
                              f"{f' (momentum {config.momentum:g})' if config.finetune_optimizer == 'sgd' else ''} "
                              "learning rate of the fine-tuning phase")
        self._set_silently(self.bottleneck, lambda: self.bottleneck.setChecked(config.bottleneck))
        for label, w in self.ft_rows:
            label.setVisible(mode == "finetune")
            w.setVisible(mode == "finetune")
        augmenting = self.session.spec.augmentation.enabled()
        self.bottleneck.setEnabled(mode != "scratch" and not augmenting)
        self.bottleneck_note.setText(
            "Off while augmentation is on: augmented images differ every epoch, so features cannot be "
            "computed once." if augmenting and mode != "scratch" else ""
        )
        self.bottleneck_note.setVisible(bool(self.bottleneck_note.text()))
        index = self.session.index
        if index is not None and len(index.items):
            suggested, why = recommend_mode(len(index.items), max(2, len(index.class_names)))
            name = self.mode_combo.itemText(self.mode_combo.findData(suggested)).split(" (")[0]
            self.mode_hint.setText(f"Suggested for this dataset: {name}. {why[:1].upper() + why[1:]}.")
        else:
            self.mode_hint.setText("Open a dataset for a suggestion.")
        weights = "none" if mode == "scratch" else self.session.spec.params.get("weights", "none")
        editor = self.param_editors.get("weights")
        if editor is not None:
            editor.setEnabled(mode != "scratch")
        self.weights_note.setStyleSheet("")
        busy = self._weights_worker is not None
        self.download_button.setVisible(False)
        self.random_button.setVisible(mode != "scratch")
        self.file_button.setVisible(True)
        for button in (self.download_button, self.file_button, self.random_button):
            button.setEnabled(not busy)
        if weights == "none":
            whole = " the whole network trains from scratch" if mode == "scratch" else ""
            self.weights_note.setText("\u26a0 Random weights: this model is not pretrained;" + (whole or
                                      " choose ImageNet or a weights file to start from pretrained ones") + ".")
            self.weights_note.setStyleSheet("color: #b3261e; font-weight: bold;")
        elif weights == "imagenet":
            wf = provider.weights_file(self.session.spec.params, self.session.spec.input_size)
            if wf is None:
                self.weights_note.setText(f"{describe(weights)}: {provider.display_name}'s plugin fetches them "
                                          "when training starts.")
            elif _in_cache(wf):
                self.weights_note.setText(f"\u2714 {describe(weights)}: {provider.display_name}'s weights are in "
                                          f"Keras' cache ({wf.fname}).")
            else:
                size = f" ({wf.size / 1e6:.0f} MB)" if wf.size else ""
                self.weights_note.setText(f"{describe(weights)}: {provider.display_name}'s weights are not "
                                          f"downloaded yet{size}. Download them now into {keras_cache_dir()}, "
                                          "choose a weights file, or train from random weights.")
                self.download_button.setVisible(True)
        else:
            self.weights_note.setText(describe(weights) + " (checked against the architecture).")

    # ------------------------------------------------------------------ where the weights come from

    def _weights_provider(self):
        return self.registry.backbones.get(self.session.spec.backbone)

    def download_weights(self) -> Worker | None:
        """Fetch the chosen backbone's ImageNet weights into Keras' cache (in a worker, with progress)."""
        from cnnstudio.core.model import weights

        provider = self._weights_provider()
        wf = provider.weights_file(self.session.spec.params, self.session.spec.input_size) if provider else None
        if wf is None or self._weights_worker is not None:
            return None
        worker = Worker(weights.fetch, wf, provider.display_name)
        self.session.track(worker.describe(f"Downloading {provider.display_name} weights..."), worker.what)
        worker.progress.connect(self._on_weights_progress)
        worker.finished.connect(self._on_weights_done)
        worker.errored.connect(self._on_weights_failed)
        return self._start_weights_worker(worker)

    def _start_weights_worker(self, worker: Worker) -> Worker:
        self._weights_worker = worker
        widgets.set_error(self.weights_error, "")
        self.weights_progress.setRange(0, 0)
        self.weights_progress.show()
        self._show_transfer()
        return worker.start()

    def _on_weights_progress(self, task: str, done: int, total: int) -> None:
        if total:
            self.weights_progress.setRange(0, total)
            self.weights_progress.setValue(min(done, total))

    def _weights_worker_done(self) -> bool:
        if self.sender() is not self._weights_worker:
            return False
        self._weights_worker = None
        self.weights_progress.hide()
        return True

    def _on_weights_done(self, _result) -> None:
        if self._weights_worker_done():
            self._show_transfer()
            self.weightsReady.emit()

    def _on_weights_failed(self, message: str, details: str) -> None:
        if not self._weights_worker_done():
            return
        self._show_transfer()
        widgets.set_error(self.weights_error, message[:1].upper() + message[1:])  # one line, in place
        if details:
            errors.show_error(self, "The weights could not be prepared", message, details)
        self.weightsFailed.emit(message)

    def _choose_weights_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a weights file of the base", "",
                                              "Keras weights (*.weights.h5 *.h5);;All files (*)")
        if path:
            self.use_weights_file(path)

    def use_weights_file(self, path) -> Worker | None:
        """Check ``path`` against the backbone's architecture (in a worker), then use it; a file that
        does not fit is named in place with the reason and the weights stay as they were."""
        provider = self._weights_provider()
        if provider is None or self._weights_worker is not None:
            return None
        worker = Worker(_check_weights_file, provider, dict(self.session.spec.params), str(path), self.registry)
        self.session.track(worker.describe("Checking the weights file..."), worker.what)
        worker.finished.connect(self._on_weights_file_checked)
        worker.errored.connect(self._on_weights_failed)
        return self._start_weights_worker(worker)

    def _on_weights_file_checked(self, path: str) -> None:
        if not self._weights_worker_done():
            return
        import dataclasses

        spec = copy.deepcopy(self.session.spec)
        spec.params["weights"] = path
        config = self.session.train_config
        if (config.mode or "extract") == "scratch":  # a file is pretrained: the base starts frozen
            config = dataclasses.replace(config, mode="extract")
        self.session.set_model_and_training(spec, config, "Weights File")
        self._show_spec(self.session.spec)
        self.weightsReady.emit()

    def use_random_weights(self) -> None:
        """Random initialisation: no pretraining, so the whole network trains (mode From scratch)."""
        import dataclasses

        spec = copy.deepcopy(self.session.spec)
        spec.params["weights"] = "none"
        config = dataclasses.replace(self.session.train_config, mode="scratch")
        self._apply(spec, rebuild=True, config=config, what="Random Weights")
        widgets.set_error(self.weights_error, "")

    def _on_transfer_edit(self) -> None:
        import dataclasses

        config = dataclasses.replace(
            self.session.train_config,
            mode=self.mode_combo.currentData(),
            finetune_blocks=self.ft_blocks.value(),
            finetune_epochs=self.ft_epochs.value(),
            finetune_learning_rate=self.ft_lr.value(),
            bottleneck=self.bottleneck.isChecked(),
        )
        self.session.set_train_config(config)

    def transfer_key(self) -> tuple | None:
        provider = self.registry.backbones.get(self.session.spec.backbone)
        if provider is None or not provider.pretrained:
            return None
        c = self.session.train_config
        return (c.mode or "extract", c.finetune_blocks, c.finetune_from)

    @staticmethod
    def _tune_form(form: QFormLayout) -> None:
        form.setHorizontalSpacing(widgets.MARGIN)
        form.setVerticalSpacing(widgets.SPACING)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)

    def _build_summary(self) -> None:
        self.summary_status = widgets.hint_label("")
        self.count_labels = {}
        counts = QGridLayout()
        counts.setHorizontalSpacing(widgets.MARGIN)
        for column, (key, title) in enumerate((("trainable", "Trainable"), ("frozen", "Frozen"),
                                               ("total", "Total"))):
            caption = widgets.hint_label(title)
            value = QLabel("\u2014")
            font = value.font()
            font.setPointSizeF(font.pointSizeF() * 1.35)
            font.setBold(True)
            value.setFont(font)
            counts.addWidget(caption, 0, column)
            counts.addWidget(value, 1, column)
            self.count_labels[key] = value
        self.blocks = QTreeWidget()
        self.blocks.setHeaderLabels(["Block", "Trainable", "Frozen", "State"])
        self.blocks.setRootIsDecorated(False)
        self.blocks.setUniformRowHeights(True)
        self.blocks.setAlternatingRowColors(True)
        self.blocks.setToolTip("Parameters per block of the base, as the chosen mode trains them")
        for column in range(4):
            self.blocks.header().setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.blocks.setMaximumHeight(230)
        self.blocks.setVisible(False)
        self.layers = QTreeWidget()
        self.layers.setHeaderLabels(["Layer", "Type", "Output shape", "Params"])
        self.layers.setAlternatingRowColors(True)
        self.layers.setUniformRowHeights(True)
        header = self.layers.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.summary_box = QWidget()
        layout = QVBoxLayout(self.summary_box)
        layout.setContentsMargins(widgets.MARGIN, 0, 0, 0)
        layout.setSpacing(widgets.SPACING)
        layout.addWidget(widgets.section_label("Summary"))
        layout.addLayout(counts)
        layout.addWidget(self.summary_status)
        layout.addWidget(self.blocks)
        layout.addWidget(self.layers, 1)

    def _fill_chooser(self) -> None:
        """Presets, then backbones, as the registry has them now."""
        self.chooser.clear()
        bold = QFont(self.chooser.font())
        bold.setBold(True)
        model = self.chooser.model()

        def header(text):
            self.chooser.addItem(text)
            item = model.item(self.chooser.count() - 1)
            item.setEnabled(False)
            item.setFont(bold)

        header("Presets")
        for preset in self.registry.presets.values():
            self.chooser.addItem(f"    {preset.display_name}", f"preset:{preset.id}")
            self.chooser.setItemData(self.chooser.count() - 1, preset.description, Qt.ItemDataRole.ToolTipRole)
        self.chooser.insertSeparator(self.chooser.count())
        header("Backbones")
        for provider in self.registry.backbones.values():
            self.chooser.addItem(f"    {provider.display_name}", f"backbone:{provider.id}")
            self.chooser.setItemData(self.chooser.count() - 1, provider.description, Qt.ItemDataRole.ToolTipRole)

    def _on_registry(self) -> None:
        """Plugins were installed, removed, enabled or disabled: offer what is registered now."""
        self._fill_chooser()
        self._backbone = None  # rebuild the forms: a block type or parameter may have changed
        self._summarized_key = None
        self._show_spec(self.session.spec)
        self._schedule_summary()

    # ------------------------------------------------------------------ showing a spec

    def _select_in_chooser(self, spec) -> None:
        target = f"preset:{spec.preset}" if spec.preset in self.registry.presets else f"backbone:{spec.backbone}"
        index = self.chooser.findData(target)
        if index < 0:
            index = self.chooser.findData(f"backbone:{spec.backbone}")
        self.chooser.setCurrentIndex(index)

    def _show_spec(self, spec) -> None:
        """Fill every editor from ``spec`` (rebuilding the backbone form for its provider)."""
        self._select_in_chooser(spec)
        provider = self.registry.backbones.get(spec.backbone)
        if provider is None:
            widgets.set_error(self.error, f"The backbone {spec.backbone!r} is not available: its plugin is not "
                                          "installed or is disabled (Help > Plugins). Choose another model.")
            return
        if spec.preset in self.registry.presets:
            self.description.setText(self.registry.presets[spec.preset].description)
        else:
            self.description.setText(provider.description)
        if spec.backbone != self._backbone:
            self._build_backbone_form(provider)
        for name, editor in self.param_editors.items():
            editor.set_value(spec.params.get(name))
        if self.block_editor is not None:
            self.block_editor.set_value(spec.params.get(self._blocks_param, []))
        self._set_silently(self.input_size, lambda: self.input_size.setValue(spec.input_size))
        self.input_hint.setText(f"default {provider.default_input_size}, at least {provider.min_input_size}")
        self.head_editors["pooling"].set_value(spec.head.pooling)
        self.head_editors["dropout"].set_value(spec.head.dropout)
        self.dense_edit.setText(", ".join(str(u) for u in spec.head.dense))
        for name, editor in self.aug_editors.items():
            editor.set_value(getattr(spec.augmentation, name))
        self._preset = spec.preset
        widgets.set_error(self.error, "")
        self._show_transfer()

    def _build_backbone_form(self, provider) -> None:
        self._backbone = provider.id
        self.backbone_title.setText(f"Backbone: {provider.display_name}")
        while self.backbone_form.rowCount() > 1:  # the last row (input size) stays
            self.backbone_form.removeRow(0)
        if self.block_editor is not None:
            self.block_editor.deleteLater()
            self.block_editor = None
        self.param_editors = {}
        self._blocks_param = None
        row = 0
        for param in provider.params:
            if param.kind == "blocks":
                self._blocks_param = param.name
                self.block_editor = BlockEditor(self.registry)
                self.block_editor.setToolTip(param.help)
                self.block_editor.changed.connect(self._on_edit)
                self.blocks_holder.addWidget(self.block_editor)
                continue
            if provider.pretrained and param.name == "trainable":
                continue  # the transfer-learning mode decides what trains
            editor = widgets.param_editor(param)
            editor.changed.connect(self._on_edit)
            if param.kind == "weights":  # a file is checked against the architecture before it is used
                editor.browse.clicked.disconnect()
                editor.browse.clicked.connect(self._choose_weights_file)
            label = QLabel(widgets.param_label(param))
            label.setToolTip(param.help)
            self.backbone_form.insertRow(row, label, editor)
            self.param_editors[param.name] = editor
            row += 1

    @staticmethod
    def _set_silently(widget, fn) -> None:
        blocked = widget.blockSignals(True)
        try:
            fn()
        finally:
            widget.blockSignals(blocked)

    # ------------------------------------------------------------------ edits -> spec

    def _on_chosen(self, index: int) -> None:
        from cnnstudio.core.model.spec import resolve_spec

        data = self.chooser.itemData(index)
        if not data:
            return
        kind, _, id_ = data.partition(":")
        try:
            spec = resolve_spec(self.registry, id_)
            if kind == "backbone":  # a new backbone keeps the head and augmentation chosen so far
                current = self.session.spec
                spec.head = copy.deepcopy(current.head)
                spec.augmentation = copy.deepcopy(current.augmentation)
                spec = spec.validate(self.registry)
        except StudioError as exc:
            widgets.set_error(self.error, str(exc))
            return
        self._apply(spec, rebuild=True)

    def select_model(self, id_: str) -> None:
        """Choose preset or backbone ``id_`` as a user would in the combo box."""
        for kind in ("preset", "backbone"):
            index = self.chooser.findData(f"{kind}:{id_}")
            if index >= 0:
                self.chooser.setCurrentIndex(index)
                self._on_chosen(index)
                return
        raise KeyError(id_)

    def _on_dense_edited(self) -> None:
        if self.dense_edit.isModified():
            self.dense_edit.setModified(False)
            self._on_edit()

    def _dense_units(self) -> list[int]:
        text = self.dense_edit.text().replace(";", ",")
        units = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                units.append(int(part))
            except ValueError:
                raise SpecError(f"head dense: layer sizes must be whole numbers, got {part!r}") from None
        return units

    def spec_from_form(self):
        """The spec the editors describe (raises SpecError for what a spec cannot even hold)."""
        from cnnstudio.core.model.spec import AugmentSpec, HeadSpec, ModelSpec

        params = {name: editor.value() for name, editor in self.param_editors.items()}
        if self.block_editor is not None:
            params[self._blocks_param] = self.block_editor.value()
        return ModelSpec(
            backbone=self._backbone,
            params=params,
            head=HeadSpec(pooling=self.head_editors["pooling"].value(), dense=self._dense_units(),
                          dropout=self.head_editors["dropout"].value()),
            augmentation=AugmentSpec(**{name: e.value() for name, e in self.aug_editors.items()}),
            input_size=self.input_size.value(),
            preset=self._preset,
        )

    def _on_edit(self) -> None:
        try:
            spec = self.spec_from_form()
        except SpecError as exc:
            widgets.set_error(self.error, str(exc))
            return
        if self._turns_random(spec):
            # A frozen random base learns nothing: random weights train the whole network, as the
            # Random weights button does (one Undo step).
            import dataclasses

            config = dataclasses.replace(self.session.train_config, mode="scratch")
            self._apply(spec, rebuild=True, config=config, what="Random Weights")
            return
        self._apply(spec, rebuild=False)

    def _turns_random(self, spec) -> bool:
        """Whether this edit sets a pretrained backbone's weights to random while its base is frozen."""
        provider = self.registry.backbones.get(spec.backbone)
        return (provider is not None and provider.pretrained and spec.params.get("weights") == "none"
                and self.session.spec.params.get("weights") != "none"
                and (self.session.train_config.mode or "extract") != "scratch")

    def _apply(self, spec, rebuild: bool, config=None, what: str = "") -> None:
        """Validate and set ``spec`` (with ``config``, as one Undo step ``what``, when given); on
        error show the message in place and apply nothing."""
        self._applying = True
        try:
            if config is None:
                self.session.set_spec(spec)
            else:
                self.session.set_model_and_training(spec, config, what)
        except SpecError as exc:
            widgets.set_error(self.error, str(exc))
            return
        finally:
            self._applying = False
        widgets.set_error(self.error, "")
        if rebuild:
            self._show_spec(self.session.spec)
        self._schedule_summary()

    def _on_spec(self) -> None:
        if not self._applying:  # set elsewhere (a project opened, File > New): show it
            self._show_spec(self.session.spec)
        else:
            self._show_transfer()
        self._schedule_summary()

    def _on_config(self) -> None:
        self._show_transfer()
        self._schedule_summary()

    def error_text(self) -> str:
        """The validation message shown in place ("" when the form is valid)."""
        return "" if self.error.isHidden() else self.error.text()

    # ------------------------------------------------------------------ the summary

    def _num_classes(self) -> int:
        index = self.session.index
        n = len(index.class_names) if index is not None else 0
        return n if n >= 2 else 2

    def _schedule_summary(self) -> None:
        self._timer.start()

    def build_summary(self) -> Worker | None:
        """Build the session's spec in a worker and show its layers and parameter counts."""
        spec, n, transfer = self.session.spec, self._num_classes(), self.transfer_key()
        key = (repr(spec.to_dict()), n, transfer)
        if key == self._summarized_key or spec.backbone not in self.registry.backbones:
            return None
        if self._summary_worker is not None:  # one build at a time; rebuild when it is done
            self._summary_stale = True
            return None
        loading = "Building" if "tensorflow" in sys.modules else "Loading TensorFlow and building"
        self.summary_status.setText(f"{loading} the model...")
        worker = Worker(summarize, spec, n, self.registry, transfer)
        self._summary_worker = worker
        self._building_key = key
        # Bound methods, not lambdas: Qt drops the connection if this panel goes away first.
        worker.finished.connect(self._on_summary)
        worker.errored.connect(self._on_summary_failed)
        return worker.start()

    def _summary_done(self) -> None:
        self._summary_worker = None
        if self._summary_stale:
            self._summary_stale = False
            self.build_summary()

    def _on_summary(self, summary: dict) -> None:
        self._summarized_key = self._building_key
        self.summary = summary
        for name, label in self.count_labels.items():
            label.setText(f"{summary['counts'][name]:,}")
        self.summary_status.setText(
            f"{len(summary['layers'])} layers for {summary['num_classes']} classes"
            + ("" if self.session.index is not None else " (open a dataset for its class count)")
        )
        if summary.get("finetune_counts"):
            after = summary["finetune_counts"]
            self.summary_status.setText(
                self.summary_status.text() + f"; fine-tuning then trains {after['trainable']:,} "
                f"and keeps {after['frozen']:,} frozen"
            )
        self.blocks.clear()
        for row in summary.get("blocks") or []:
            item = QTreeWidgetItem([row["block"], f"{row['trainable']:,}", f"{row['frozen']:,}", row["state"]])
            for column in (1, 2):
                item.setTextAlignment(column, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if row["state"] == "frozen":
                for column in range(4):
                    item.setForeground(column, self.palette().color(self.palette().ColorRole.PlaceholderText))
            self.blocks.addTopLevelItem(item)
        self.blocks.setVisible(bool(summary.get("blocks")))
        self.layers.clear()
        self.layers.addTopLevelItems([self._layer_item(row) for row in summary["layers"]])
        self.summaryReady.emit(summary)
        self._summary_done()

    def _layer_item(self, row: dict) -> QTreeWidgetItem:
        item = QTreeWidgetItem([row["name"], row["type"], row["shape"], f"{row['params']:,}"])
        item.setTextAlignment(3, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if not row["trainable"] and row["params"]:
            item.setToolTip(0, "frozen: not trained")
            item.setText(3, f"{row['params']:,} (frozen)")
        for child in row["children"]:
            item.addChild(self._layer_item(child))
        return item

    def _on_summary_failed(self, message: str, details: str) -> None:
        self._summarized_key = self._building_key  # the same spec would fail the same way
        self.summary = None
        for label in self.count_labels.values():
            label.setText("\u2014")
        self.layers.clear()
        self.summary_status.setText("")
        widgets.set_error(self.error, f"The model cannot be built: {message}")
        if details:
            errors.show_error(self, "The model could not be built", message, details)
        self.summaryFailed.emit(message)
        self._summary_done()


def _in_cache(wf) -> bool:
    """Whether ``wf`` is in Keras' cache, at its full size (its hash is checked when it is used)."""
    from cnnstudio.core.model.weights import cached_path

    path = cached_path(wf)
    try:
        return path.is_file() and (not wf.size or path.stat().st_size == wf.size)
    except OSError:
        return False


def _check_weights_file(provider, params: dict, path: str, registry) -> str:
    """``path`` when it is a weights file of ``provider``'s base: built with it at its smallest input
    size (the convolution weights do not depend on it); else a WeightsError naming the file."""
    from pathlib import Path

    from cnnstudio.core.errors import WeightsError
    from cnnstudio.core.model.params import WEIGHTS_SUFFIXES

    file = Path(path)
    if not file.name.lower().endswith(WEIGHTS_SUFFIXES):
        raise WeightsError(f"{file}: not a Keras weights file (.weights.h5 or .h5)")
    if not file.is_file():
        raise WeightsError(f"{file}: no such file")
    provider.build({**params, "weights": str(file)}, provider.min_input_size, registry)
    return str(file)


def _line() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.HLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line
