"""Reports of training runs: one self-contained HTML file per run, and a comparison of several runs.

:func:`run_report_html` and :func:`comparison_html` return the HTML as text: every image inside
(charts as inline SVG drawn here, thumbnails as base64 data), no scripts, no external addresses,
and every file name and user string through :func:`html.escape`.

The PDF variant (``cnnstudio.gui.pdf``, Qt's own PDF writer) uses the same builders with
``inline=False`` (:func:`run_report_parts` / :func:`comparison_parts`): images are then referenced
as ``report:N.svg`` / ``report:N.jpeg`` names and returned as resources, because Qt's rich text
does not show inline SVG or data addresses.

Parameter counts come from the bundle's ``model.keras`` without loading the model (no
TensorFlow): the arrays of its weights file are counted with h5py (the optimizer's slots left
out). No Qt, no matplotlib here.
"""

from __future__ import annotations

import base64
import io
import json
import math
import time
import zipfile
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np

from cnnstudio.core.errors import StudioError
from cnnstudio.core.io.atomic import read_json
from cnnstudio.core.runs.records import Predictions, RunRecords

MAX_MISCLASSIFIED = 12
THUMB = 96
BINS = 10

SECTIONS = (
    ("dataset", "Dataset"),
    ("architecture", "Architecture"),
    ("hyperparameters", "Hyper-parameters"),
    ("weights", "Weights"),
    ("device", "Device"),
    ("training", "Training"),
    ("curves", "Curves"),
    ("metrics", "Test metrics"),
    ("confusion", "Confusion matrix"),
    ("per-class", "Per-class scores"),
    ("misclassified", "Misclassified examples"),
    ("calibration", "Calibration"),
    ("versions", "Versions"),
)

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
TRAIN_COLOUR, VAL_COLOUR = PALETTE[0], PALETTE[1]
RANDOM_WEIGHTS = "random initialisation (not pretrained)"
SVG_NS = "http://www.w3.org/2000/svg"

CSS = """
body { font-family: sans-serif; font-size: 10pt; color: #222; margin: 1.5em; }
h1 { font-size: 16pt; } h2 { font-size: 13pt; margin-top: 1.2em; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; margin: 0.3em 0; }
th, td { border: 1px solid #bbb; padding: 2px 6px; text-align: left; vertical-align: top; }
td.n { text-align: right; }
.muted { color: #666; }
"""


class ReportError(StudioError):
    """A run folder that cannot be reported (missing or unreadable files)."""


# ----------------------------------------------------------------------------- reading a run


@dataclass
class RunData:
    root: Path
    config: dict
    metrics: dict  # {} when the run has not finished
    history: list[dict]
    predictions: Predictions | None  # None when the run has none
    problems: list[dict]  # files skipped while training
    bundle: dict
    params: dict | None = None  # {"total": n, "layers": [(name, count)]} or None
    layers: list = field(default_factory=list)  # [(class_name, name, trainable)] of the top-level model

    @property
    def class_names(self) -> list[str]:
        return list(self.metrics.get("class_names") or self.config.get("dataset", {}).get("class_names") or [])

    @property
    def name(self) -> str:
        return self.root.name


def _bundle_meta(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        meta = read_json(path)
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(meta, dict):
        raise ReportError(f"{path}: not a JSON object")
    return meta


def parameter_counts(keras_file: Path) -> tuple[dict | None, list]:
    """``({"total", "by_layer"}, layers)`` from a ``.keras`` file without loading it: the weights
    file's arrays (optimizer slots excluded) counted with h5py, the top-level layers from its
    config. ``(None, [])`` when the file is missing or unreadable."""
    try:
        import h5py

        with zipfile.ZipFile(keras_file) as z:
            cfg = json.loads(z.read("config.json"))
            weights = z.read("model.weights.h5")
        by_layer: dict[str, int] = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and not name.startswith("optimizer"):
                parts = name.split("/")
                key = parts[1] if len(parts) > 2 and parts[0] == "layers" else parts[0]
                by_layer[key] = by_layer.get(key, 0) + int(np.prod(obj.shape, dtype=np.int64))

        with h5py.File(io.BytesIO(weights), "r") as f:
            f.visititems(visit)
        layers = [(lay.get("class_name", "?"), lay.get("config", {}).get("name", "?"),
                   lay.get("config", {}).get("trainable"))
                  for lay in cfg.get("config", {}).get("layers", [])]
        return {"total": sum(by_layer.values()), "by_layer": sorted(by_layer.items())}, layers
    except Exception:  # noqa: BLE001 - a report never fails on a model it cannot read
        return None, []


def load_run(run_dir) -> RunData:
    """The run's records (read and checked by :mod:`cnnstudio.core.runs.records`), its bundle's
    metadata and parameter counts."""
    from cnnstudio.core.model.bundle import META_FILE, MODEL_FILE

    root = Path(run_dir)
    if not root.is_dir():
        raise ReportError(f"{root}: not a folder")
    run = RunRecords(root)
    data = RunData(root, run.config, run.metrics or {}, run.history, run.predictions, run.problems,
                   _bundle_meta(run.paths.bundle / META_FILE))
    data.params, data.layers = parameter_counts(run.paths.bundle / MODEL_FILE)
    return data


# ----------------------------------------------------------------------------- images


class _Images:
    """Inline images (``inline=True``: SVG elements, data addresses) or named resources."""

    def __init__(self, inline: bool):
        self.inline = inline
        self.resources: dict[str, tuple[str, bytes]] = {}

    def svg(self, svg: str, width: int, height: int, alt: str) -> str:
        if self.inline:  # HTML5 needs no namespace: the page holds no address at all
            return svg.replace(f' xmlns="{SVG_NS}"', "", 1)
        name = f"report:{len(self.resources)}.svg"
        self.resources[name] = ("svg", svg.encode("utf-8"))
        return f'<img src="{name}" width="{width}" height="{height}" alt="{escape(alt)}">'

    def raster(self, data: bytes, fmt: str, width: int, height: int, alt: str) -> str:
        if self.inline:
            src = f"data:image/{fmt};base64," + base64.b64encode(data).decode("ascii")
        else:
            src = f"report:{len(self.resources)}.{fmt}"
            self.resources[src] = (fmt, data)
        return f'<img src="{src}" width="{width}" height="{height}" alt="{escape(alt)}">'


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.{digits}f}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def _e(v, digits: int = 4) -> str:
    return escape(_fmt(v, digits))


def _kv_table(rows) -> str:
    body = "".join(f"<tr><th>{escape(str(k))}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table border="1" cellspacing="0" cellpadding="3">{body}</table>'


def _table(header, rows, numeric=()) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = ""
    for row in rows:
        cells = ""
        for i, v in enumerate(row):
            cls = ' class="n" align="right"' if i in numeric else ""
            cells += f"<td{cls}>{_e(v)}</td>"
        body += f"<tr>{cells}</tr>"
    # <thead>: a table that runs onto the next page of the PDF repeats its header row there.
    return f'<table border="1" cellspacing="0" cellpadding="3"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _seconds(s) -> str:
    if s is None:
        return "–"
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min {sec:02d} s" if h else f"{m} min {sec:02d} s"


# ----------------------------------------------------------------------------- SVG charts


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step - 1e-9) * step
    out, v = [], start
    while v <= hi + 1e-9 * step:
        out.append(round(v, 10))
        v += step
    return out


def line_chart_svg(series, *, title: str, ylabel: str, xlabel: str = "epoch", markers=(), width: int = 640,
                   height: int = 300, y_range=None, diagonal: bool = False, bars=None) -> str:
    """An SVG line chart. ``series``: ``[(label, colour, dashed, [(x, y), ...])]``; ``markers``:
    ``[(x, label)]`` drawn as dashed vertical lines; ``bars``: ``[(x0, x1, y)]`` (reliability)."""
    left, right, top, bottom = 58, 160, 28, 40
    pw, ph = width - left - right, height - top - bottom
    xs = [x for *_, pts in series for x, y in pts if y is not None]
    ys = [y for *_, pts in series for x, y in pts if y is not None]
    if bars:
        xs += [b[0] for b in bars] + [b[1] for b in bars]
        ys += [b[2] for b in bars]
    xs += [m[0] for m in markers]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x1 <= x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y_range is not None:
        y0, y1 = y_range
    else:
        y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
        pad = (y1 - y0) * 0.08 or abs(y1) * 0.1 or 0.5
        y0, y1 = y0 - pad, y1 + pad

    def sx(x):
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y):
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    out = [f'<svg xmlns="{SVG_NS}" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="{left}" y="16" font-size="13" font-weight="bold" fill="#222">{escape(title)}</text>']
    for t in _ticks(y0, y1):
        if y0 - 1e-12 <= t <= y1 + 1e-12:
            y = sy(t)
            out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#e4e4e4"/>')
            out.append(f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end" fill="#444">{t:g}</text>')
    xt = _ticks(x0, x1, 8)
    if xlabel == "epoch":  # whole epochs only
        xt = [t for t in xt if float(t).is_integer()]
        if len(xt) < 2:
            xt = list(range(math.ceil(x0), math.floor(x1) + 1))
    for t in xt:
        if x0 - 1e-12 <= t <= x1 + 1e-12:
            x = sx(t)
            out.append(f'<line x1="{x:.1f}" y1="{top + ph}" x2="{x:.1f}" y2="{top + ph + 4}" stroke="#444"/>')
            out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle" fill="#444">{t:g}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 6}" text-anchor="middle" fill="#444">{escape(xlabel)}</text>')
    out.append(f'<text x="14" y="{top + ph / 2:.1f}" text-anchor="middle" fill="#444" '
               f'transform="rotate(-90 14 {top + ph / 2:.1f})">{escape(ylabel)}</text>')
    for bx0, bx1, by in bars or ():
        if by is None:
            continue
        out.append(f'<rect x="{sx(bx0) + 1:.1f}" y="{sy(by):.1f}" width="{max(sx(bx1) - sx(bx0) - 2, 1):.1f}" '
                   f'height="{max(sy(y0) - sy(by), 0):.1f}" fill="#9ecae1" stroke="#3182bd"/>')
    if diagonal:
        out.append(f'<line x1="{sx(0):.1f}" y1="{sy(0):.1f}" x2="{sx(1):.1f}" y2="{sy(1):.1f}" stroke="#888" '
                   'stroke-dasharray="4,3"/>')
    for mx, mlabel in markers:
        x = sx(mx)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#555" '
                   'stroke-width="1.5" stroke-dasharray="6,4"/>')
        out.append(f'<text x="{x + 4:.1f}" y="{top + 12}" fill="#555">{escape(mlabel)}</text>')
    ly = top + 10
    for label, colour, dashed, pts in series:
        pts = [(x, y) for x, y in pts if y is not None and not (isinstance(y, float) and math.isnan(y))]
        dash = ' stroke-dasharray="5,3"' if dashed else ""
        if len(pts) > 1:
            d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
            out.append(f'<polyline points="{d}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for x, y in pts if len(pts) <= 60 else ():
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>')
        lx = left + pw + 10
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 20}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/>')
        for line in _legend_lines(label):  # whole, on as many lines as it takes
            out.append(f'<text x="{lx + 25}" y="{ly + 4}" fill="#222">{escape(line)}</text>')
            ly += 13
        ly += 3
    out.append("</svg>")
    return "".join(out)


def _legend_lines(label: str, width: int = 19) -> list[str]:
    """A legend entry in lines of at most ``width`` characters (a longer word keeps its own line)."""
    lines: list[str] = []
    for word in label.split() or [""]:
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _phase_markers(history: list[dict]) -> list[tuple[float, str]]:
    """A marker half an epoch before the first epoch of each new phase (fine-tuning)."""
    out, prev = [], None
    for row in history:
        phase = row.get("phase")
        if prev is not None and phase not in (None, prev):
            label = "fine-tuning" if str(phase).startswith("fine") else str(phase)
            out.append((float(row["epoch"]) - 0.5, label))
        prev = phase if phase is not None else prev
    return out


def _curve(history, key):
    return [(float(r["epoch"]), r.get(key) if isinstance(r.get(key), float) else None) for r in history]


# ----------------------------------------------------------------------------- sections


def _section(sid: str, title: str, body: str) -> str:
    return f'<div class="section" id="{sid}"><a name="{sid}"></a><h2>{escape(title)}</h2>\n{body}\n</div>\n'


def _dataset(run: RunData) -> str:
    ds = run.config.get("dataset", {})
    split = run.config.get("split", {})
    names = run.class_names
    counts = ds.get("counts") or [None] * len(names)
    parts = {}
    for part in ("train", "val", "test"):
        per = dict.fromkeys(names, 0)
        for p in split.get(part, []) or []:
            top = str(p).split("/", 1)[0]
            if top in per:
                per[top] += 1
        parts[part] = per
    rows = [[n, c, parts["train"][n], parts["val"][n], parts["test"][n]] for n, c in zip(names, counts)]
    rows.append(["total", sum(c for c in counts if c is not None),
                 *(sum(parts[p].values()) for p in ("train", "val", "test"))])
    body = _kv_table([("folder", ds.get("root")), ("classes", len(names)),
                      ("split seed", split.get("seed")), ("validation fraction", split.get("val_fraction")),
                      ("test fraction", split.get("test_fraction"))])
    body += _table(["class", "images", "train", "validation", "test"], rows, numeric=(1, 2, 3, 4))
    found = (run.config.get("dataset") or {}).get("problems") or []
    if found:
        body += f"<p>The dataset scan found {len(found)} problem(s):</p>"
        body += _table(["level", "file or class", "reason"],
                       [[d.get("level"), d.get("path") or "(dataset)", d.get("reason")] for d in found])
    problems = list(run.problems)
    problems += [d for d in run.metrics.get("skipped", []) or [] if isinstance(d, dict)]
    if problems:
        body += f"<p>{len(problems)} file(s) could not be read and were skipped:</p>"
        body += _table(["file", "reason"], [[d.get("path"), d.get("reason")] for d in problems])
    else:
        body += '<p class="muted">No problem files while training.</p>'
    return body


def _weights_text(w: dict | None) -> str:
    if not w or not w.get("pretrained"):
        return RANDOM_WEIGHTS
    return str(w.get("label") or w.get("kind") or "pretrained")


PHASE_TITLES = {"train": "Training", "head": "Phase 1 (the head on the frozen base)",
                "finetune": "Phase 2 (fine-tuning the top of the base)"}


def _architecture(run: RunData) -> str:
    spec = run.config.get("spec") or run.bundle.get("spec") or {}
    rows = [("backbone", spec.get("backbone")), ("preset", spec.get("preset")), ("input size", spec.get("input_size")),
            ("backbone parameters", spec.get("params")), ("head", spec.get("head")),
            ("augmentation", spec.get("augmentation")), ("preprocessing", run.bundle.get("preprocessing"))]
    if run.params:
        rows.append(("total parameters", run.params["total"]))
    split = run.metrics.get("parameters")
    if isinstance(split, dict):
        rows += [("trainable parameters (at the end)", split.get("trainable")),
                 ("frozen parameters (at the end)", split.get("frozen"))]
    body = _kv_table(rows)
    if run.params:
        body += "<p>Parameters per top-level weight group of the saved model (optimizer state excluded):</p>"
        body += _table(["weights of", "parameters"], [[n, c] for n, c in run.params["by_layer"]], numeric=(1,))
    else:
        body += '<p class="muted">The saved model could not be read: no parameter counts.</p>'
    blocks = run.metrics.get("blocks")
    if isinstance(blocks, dict):
        for phase, block_rows in blocks.items():
            body += f"<p>{escape(PHASE_TITLES.get(phase, phase))}: trainable and frozen parameters per block " \
                    "(frozen counts include batch-norm statistics):</p>"
            body += _table(["block", "state", "trainable", "frozen"],
                           [[r.get("block"), r.get("state"), r.get("trainable"), r.get("frozen")]
                            for r in block_rows if isinstance(r, dict)], numeric=(2, 3))
    if run.layers:
        body += "<p>Layers of the model:</p>"
        body += _table(["layer", "type", "trainable"], [[n, c, t] for c, n, t in run.layers])
    return body


def _hyper(run: RunData) -> str:
    return _kv_table(sorted((run.config.get("train") or {}).items()))


def _weights(run: RunData) -> str:
    w = run.metrics.get("weights") or run.config.get("weights") or run.bundle.get("weights")
    rows = [("source", _weights_text(w))]
    if w:
        rows += [("kind", w.get("kind")), ("recorded label", w.get("label")), ("pretrained", bool(w.get("pretrained")))]
    rows.append(("transfer mode", run.metrics.get("mode") or (run.config.get("train") or {}).get("mode") or "–"))
    return _kv_table(rows)


def _device(run: RunData) -> str:
    rows = [("device", run.metrics.get("device") or run.config.get("device"))]
    compute = run.metrics.get("compute") or run.config.get("compute")
    if compute:
        asked = compute.get("asked") or {}
        rows += [("strategy", compute.get("strategy")), ("devices", ", ".join(compute.get("devices") or [])),
                 ("replicas", compute.get("replicas")),
                 ("precision", f"{compute.get('precision')} (asked: {asked.get('precision', 'auto')})")]
        if "jit" in compute:
            rows.append(("XLA", f"{'on' if compute['jit'] else 'off'} (asked: {asked.get('jit', 'auto')})"))
    return _kv_table(rows)


def _training(run: RunData) -> str:
    m = run.metrics
    rows = [("started", run.config.get("created")), ("status", m.get("status")), ("epochs run", m.get("epochs_run")),
            ("best epoch", m.get("best_epoch")), ("training time", _seconds(m.get("train_seconds")))]
    if m.get("bottleneck"):
        rows.append(("bottleneck features", m.get("bottleneck")))
    return _kv_table(rows)


def _curves(run: RunData, images: _Images) -> str:
    h = run.history
    if not h:
        return '<p class="muted">No history.</p>'
    markers = _phase_markers(h)
    out = ""
    for key, title in (("loss", "Loss"), ("accuracy", "Accuracy")):
        series = [("train", TRAIN_COLOUR, False, _curve(h, key)), ("validation", VAL_COLOUR, False, _curve(h, f"val_{key}"))]
        series = [s for s in series if any(y is not None for _, y in s[3])]
        if series:
            svg = line_chart_svg(series, title=title, ylabel=key, markers=markers, width=600)
            out += f"<p>{images.svg(svg, 600, 300, title)}</p>"
    if markers:
        out += "<p>The dashed line marks where fine-tuning starts.</p>"
    return out


def _probs(run: RunData):
    """The true classes and the probabilities of the test images; empty without probabilities."""
    p = run.predictions
    if p is None or p.probs is None:
        return np.zeros(0, dtype=int), np.zeros((0, len(run.class_names)))
    return p.y_true(), p.probs


def _metrics(run: RunData) -> str:
    from cnnstudio.core.evaluation.metrics import binary_curves, top_k_accuracy

    m = run.metrics
    rows = [("test images", m.get("test_images")), ("accuracy", m.get("test_accuracy")), ("loss", m.get("test_loss")),
            ("macro F1", (m.get("macro_avg") or {}).get("f1")), ("weighted F1", (m.get("weighted_avg") or {}).get("f1"))]
    y, p = _probs(run)
    if len(y):
        rows += [(f"top-{k} accuracy", v) for k, v in top_k_accuracy(y, p).items() if k != "1"]
        b = binary_curves(y, p, run.class_names)
        if b:
            rows += [(f"ROC AUC (positive: {b['positive_class']})", b["roc_auc"]),
                     ("average precision", b["average_precision"])]
    if m.get("test_accuracy") is None:
        rows.append(("note", "no test metrics (the run did not finish, or had no test split)"))
    return _kv_table(rows)


def _shade(share: float) -> tuple[str, str]:
    share = min(max(share, 0.0), 1.0)
    r = int(255 - share * (255 - 33))
    g = int(255 - share * (255 - 102))
    b = int(255 - share * (255 - 172))
    return f"#{r:02x}{g:02x}{b:02x}", "#ffffff" if share > 0.55 else "#222222"


def _confusion(run: RunData) -> str:
    from cnnstudio.core.evaluation.metrics import normalized_confusion

    cm = run.metrics.get("confusion_matrix")
    names = run.class_names
    if not cm:
        return '<p class="muted">No confusion matrix.</p>'
    norm = normalized_confusion(cm)
    head = "<tr><th>true \\ predicted</th>" + "".join(f"<th>{escape(n)}</th>" for n in names) + "</tr>"
    body = ""
    for name, row, nrow in zip(names, cm, norm):
        cells = ""
        for v, s in zip(row, nrow):
            bg, fg = _shade(s)
            cells += (f'<td class="n" align="right" bgcolor="{bg}" style="background-color:{bg}; color:{fg}">'
                      f'<font color="{fg}">{v}<br><small>{s * 100:.0f}%</small></font></td>')
        body += f"<tr><th>{escape(name)}</th>{cells}</tr>"
    return ('<p>Rows: true class; columns: predicted class; shading and percentages: the share of each true class.</p>'
            f'<table border="1" cellspacing="0" cellpadding="4"><thead>{head}</thead><tbody>{body}</tbody></table>')


def _per_class(run: RunData) -> str:
    m = run.metrics
    pc = m.get("per_class") or {}
    if not pc:
        return '<p class="muted">No per-class scores.</p>'
    rows = [[n, d.get("precision"), d.get("recall"), d.get("f1"), d.get("support")] for n, d in pc.items()]
    for label, key in (("macro avg", "macro_avg"), ("weighted avg", "weighted_avg")):
        d = m.get(key)
        if d:
            rows.append([label, d.get("precision"), d.get("recall"), d.get("f1"), d.get("support")])
    return _table(["class", "precision", "recall", "F1", "support"], rows, numeric=(1, 2, 3, 4))


def _thumbnail(path: Path) -> tuple[bytes, int, int] | None:
    try:
        from cnnstudio.core.io.images import load_rgb

        img = load_rgb(path, draft_size=THUMB)
        img.thumbnail((THUMB, THUMB))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        scale = THUMB / max(img.width, img.height)  # small images are shown at the thumbnail size too
        return buf.getvalue(), round(img.width * scale), round(img.height * scale)
    except Exception:  # noqa: BLE001 - a missing or broken image is shown as such
        return None


def _misclassified(run: RunData, images: _Images) -> str:
    rows = run.predictions.rows if run.predictions is not None else []
    wrong = sorted((r for r in rows if not r.correct), key=lambda r: -r.confidence)
    if not rows:
        return '<p class="muted">No predictions recorded.</p>'
    if not wrong:
        return "<p>Every test image was classified correctly.</p>"
    root = Path(run.config.get("dataset", {}).get("root", ""))
    shown = wrong[:MAX_MISCLASSIFIED]
    cells = []
    for r in shown:
        thumb = _thumbnail(root / r.path)
        pic = (images.raster(thumb[0], "jpeg", thumb[1], thumb[2], r.path) if thumb
               else '<span class="muted">(image not available)</span>')
        cells.append(f'<td align="center" width="25%">{pic}<br><small>{escape(r.path)}</small><br>'
                     f'true: <b>{escape(r.true)}</b><br>predicted: <b>{escape(r.predicted)}</b><br>'
                     f'confidence {r.confidence * 100:.1f}%</td>')
    # A table per row: the PDF moves a row that would be cut by a page end to the next page whole.
    rows = "".join('<table border="1" cellspacing="0" cellpadding="4" width="100%"><tr>' + "".join(cells[i:i + 4])
                   + "</tr></table>" for i in range(0, len(cells), 4))
    return (f"<p>{len(wrong)} of {len(rows)} test images misclassified; the {len(shown)} most confident "
            f"mistakes first.</p>{rows}")


def _calibration(run: RunData, images: _Images) -> str:
    from cnnstudio.core.evaluation.calibration import calibration_report

    y, p = _probs(run)
    if not len(y):
        return ('<p class="muted">No predictions recorded.</p>' if run.predictions is None
                else '<p class="muted">The predictions record no per-class probabilities.</p>')
    cal = calibration_report(y, p, BINS)
    bars = [(b["lower"], b["upper"], b["accuracy"]) for b in cal["bins"]]
    pts = [(b["confidence"], b["accuracy"]) for b in cal["bins"] if b["count"]]
    svg = line_chart_svg([("accuracy at mean conf.", VAL_COLOUR, False, pts)], title="Reliability diagram",
                         ylabel="accuracy", xlabel="confidence", y_range=(0.0, 1.0), diagonal=True, bars=bars,
                         width=520, height=370)  # a square plot: 302 x 302
    rows = [[f"{b['lower']:.1f}–{b['upper']:.1f}", b["count"], b["confidence"], b["accuracy"]] for b in cal["bins"]]
    return (f"<p>Expected calibration error: <b>{_e(cal['ece'])}</b> ({BINS} bins; bars: accuracy per "
            "confidence bin, dashed line: perfect calibration).</p>"
            f"<p>{images.svg(svg, 520, 370, 'Reliability diagram')}</p>"
            + _table(["confidence", "images", "mean confidence", "accuracy"], rows, numeric=(1, 2, 3)))


def _versions(run: RunData) -> str:
    v = dict(run.config.get("versions") or {})
    if run.bundle.get("cnnstudio_version"):
        v.setdefault("bundle written by cnnstudio", run.bundle["cnnstudio_version"])
    return _kv_table(sorted(v.items())) if v else '<p class="muted">No versions recorded.</p>'


def _page(title: str, body: str, generated: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<title>{escape(title)}</title>\n'
            f"<style>{CSS}</style></head>\n<body>\n<h1>{escape(title)}</h1>\n"
            f'<p class="muted">Generated by CNN Studio on {escape(generated)}.</p>\n{body}</body></html>\n')


def run_report_parts(run_dir, inline: bool = True) -> tuple[str, dict[str, tuple[str, bytes]]]:
    """The run report's HTML and, with ``inline=False``, its images as ``{name: (format, bytes)}``."""
    run = load_run(run_dir)
    images = _Images(inline)
    builders = {
        "dataset": lambda: _dataset(run), "architecture": lambda: _architecture(run),
        "hyperparameters": lambda: _hyper(run), "weights": lambda: _weights(run), "device": lambda: _device(run),
        "training": lambda: _training(run), "curves": lambda: _curves(run, images),
        "metrics": lambda: _metrics(run), "confusion": lambda: _confusion(run), "per-class": lambda: _per_class(run),
        "misclassified": lambda: _misclassified(run, images), "calibration": lambda: _calibration(run, images),
        "versions": lambda: _versions(run),
    }
    toc = "<p>" + " · ".join(f'<a href="#{sid}">{escape(t)}</a>' for sid, t in SECTIONS) + "</p>\n"
    body = toc + "".join(_section(sid, title, builders[sid]()) for sid, title in SECTIONS)
    return _page(f"Run report: {run.name}", body, time.strftime("%Y-%m-%d %H:%M")), images.resources


def run_report_html(run_dir) -> str:
    """One run's self-contained HTML report."""
    return run_report_parts(run_dir, inline=True)[0]


# ----------------------------------------------------------------------------- comparison


def comparison_parts(run_dirs, inline: bool = True) -> tuple[str, dict[str, tuple[str, bytes]]]:
    runs = [load_run(d) for d in run_dirs]
    if not runs:
        raise ReportError("no runs to compare")
    images = _Images(inline)
    labels = []
    for r in runs:  # folder names, made unique
        label, n = r.name, 2
        while label in labels:
            label, n = f"{r.name} ({n})", n + 1
        labels.append(label)
    rows = []
    for label, r in zip(labels, runs):
        m, spec = r.metrics, r.config.get("spec") or {}
        w = m.get("weights") or r.config.get("weights")
        rows.append([label, str(r.root), spec.get("backbone"), _weights_text(w), m.get("mode") or "–",
                     spec.get("input_size"), r.params["total"] if r.params else None, m.get("epochs_run"),
                     m.get("best_epoch"), _seconds(m.get("train_seconds")), m.get("test_accuracy"), m.get("test_loss"),
                     (m.get("macro_avg") or {}).get("f1"), m.get("device") or r.config.get("device")])
    fields = ["folder", "backbone", "weights", "mode", "input size", "parameters", "epochs", "best epoch",
              "training time", "test accuracy", "test loss", "macro F1", "device"]
    # One column per run: stays readable on a page for a handful of runs.
    table = _table(["", *(row[0] for row in rows)], [[f, *(row[i + 1] for row in rows)] for i, f in enumerate(fields)])
    curves = ""
    for key, title in (("loss", "Loss"), ("accuracy", "Accuracy")):
        series = []
        for i, (label, r) in enumerate(zip(labels, runs)):
            colour = PALETTE[i % len(PALETTE)]
            val = _curve(r.history, f"val_{key}")
            if any(y is not None for _, y in val):
                series.append((f"{label} (val)", colour, False, val))
            series.append((f"{label} (train)", colour, True, _curve(r.history, key)))
        series = [s for s in series if any(y is not None for _, y in s[3])]
        if series:
            svg = line_chart_svg(series, title=f"{title} (solid: validation, dashed: training)", ylabel=key,
                                 width=620, height=320)
            curves += f"<p>{images.svg(svg, 620, 320, title)}</p>"
    body = (_section("runs", "Runs", table) + _section("curves", "Curves", curves or '<p class="muted">No history.</p>'))
    cls_rows = []
    for label, r in zip(labels, runs):
        for n, d in (r.metrics.get("per_class") or {}).items():
            cls_rows.append([label, n, d.get("precision"), d.get("recall"), d.get("f1"), d.get("support")])
    if cls_rows:
        body += _section("per-class", "Per-class scores",
                         _table(["run", "class", "precision", "recall", "F1", "support"], cls_rows, numeric=(2, 3, 4, 5)))
    return _page(f"Comparison of {len(runs)} runs", body, time.strftime("%Y-%m-%d %H:%M")), images.resources


def comparison_html(run_dirs) -> str:
    """A self-contained HTML comparison of several runs: a table and overlaid curves."""
    return comparison_parts(run_dirs, inline=True)[0]
