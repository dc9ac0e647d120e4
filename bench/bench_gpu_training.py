"""Training throughput on a GPU: float32 against mixed precision, with and without XLA.

The studio's own VGG16 and ResNet50 classifiers (cnnstudio.core.models.build_model, default
head: flatten -> dense 128 -> softmax; no augmentation), 224 px, batch 64, Adam, sparse
categorical cross-entropy, trained with ``model.fit`` on a synthetic dataset: one random uint8
batch with labels, repeated (``tf.data.Dataset.from_tensors(...).repeat()``), fed as uint8 as
the studio's pipeline feeds it (so the ~10 MB host->device copy per step is included).
Weights are random (``weights="none"``): the machine needs no internet, and speed does not
depend on the weight values.

Each configuration runs in a fresh subprocess (the mixed-precision policy is global):
  model     vgg16, resnet50
  base      trainable  the whole network trains (fine-tuning all; batch norm frozen, as the
                       studio fine-tunes a pretrained ResNet50: unfreeze_backbone)
            frozen     the studio's default for pretrained backbones: frozen base, only the
                       head trains (feature extraction)
  precision float32 / mixed (keras.mixed_precision.set_global_policy("mixed_float16"))
  xla       off / on   (model.compile(..., jit_compile=False / True))
Each: ``--warmup`` steps in a first fit (tracing, XLA compilation, cuDNN autotuning; not
timed), then ``--epochs`` timed epochs of ``--steps`` steps in a second fit; images/s of the
median timed epoch after the first (the first still pays a new fit's set-up). Configurations run in that order, the trainable ones first; one that fails
prints its error and the others go on; one that would not finish within ``--budget-s`` is
skipped. Results are printed as they come, then as a table with ratios, and written to
``--json`` after every configuration (a run killed early keeps what it measured).

Keras' default ``jit_compile="auto"`` (what the studio's Trainer compiles with) turns XLA on
when a GPU is present; the report says what it resolves to on the machine.

    python bench/bench_gpu_training.py --json $OUT/gpu.json      # GPU: about 5-7 minutes on an H100
    python bench/bench_gpu_training.py --cpu-smoke                # CPU check: 32 px, batch 4, 3 steps

``--studio`` measures the studio's own training instead: ``cnnstudio train --precision mixed``
against ``--precision float32`` (each in a fresh process, the same synthetic JPEG folder, VGG16
trained whole from random weights, ``--studio-images`` images at ``--size`` px, batch ``--batch``,
``--epochs`` epochs; images/s of the median epoch after the first, from the run's history.csv),
with what each run recorded (precision, XLA). It skips, saying so, on a machine without a GPU
(``--allow-cpu`` runs it there all the same, as a check of the plumbing):

    python bench/bench_gpu_training.py --studio --json $OUT/studio.json

Where TensorFlow is not installed (its GPU wheel is larger than some machines can take),
``KERAS_BACKEND=jax`` runs the same studio models on Keras 3's JAX backend, which always
compiles with XLA: choose ``--variants xla,mixed+xla`` there (the input is then a
``keras.utils.PyDataset`` of the same batch).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("vgg16", "resnet50")
BASES = ("trainable", "frozen")
VARIANTS = (("float32", False), ("mixed", False), ("float32", True), ("mixed", True))
LABELS = {("float32", False): "float32", ("mixed", False): "mixed",
          ("float32", True): "xla", ("mixed", True): "mixed+xla"}
CLASSES = 10
RESULT = "RESULT "
GLOG_INFO = re.compile(r"I\d{4} ")  # TensorFlow's / XLA's informational log lines
# The CPU smoke test: the trainable path without XLA, the frozen path with mixed precision and XLA.
SMOKE_CONFIGS = "vgg16:trainable:float32,vgg16:frozen:mixed+xla"


# ---------------------------------------------------------------------------------------------
# child: one configuration


def run_config(cfg: dict) -> dict:
    """Build, compile and time one configuration in this (fresh) process."""
    t_start = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    from cnnstudio.core.tf import keras as load_keras
    from cnnstudio.core.tf import tensorflow_backend

    jax = tf = None
    if tensorflow_backend():
        from cnnstudio.core.tf import tf as load_tf

        tf = load_tf()
    else:  # a machine without TensorFlow: Keras 3 on JAX, which always compiles with XLA
        import jax
    keras = load_keras()
    if tf is not None:
        out = {"tf_version": tf.__version__, "keras_version": keras.__version__, "backend": "tensorflow"}
        gpus = tf.config.list_physical_devices("GPU")
        out["device"] = _device_name(tf, gpus)
        out["tf32"] = bool(tf.config.experimental.tensor_float_32_execution_enabled())
    else:
        out = {"tf_version": f"not used (Keras on JAX {jax.__version__})", "keras_version": keras.__version__,
               "backend": keras.backend.backend()}
        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        out["device"] = gpus[0].device_kind if gpus else f"CPU ({os.cpu_count()} cores)"
        out["tf32"] = str(jax.config.jax_default_matmul_precision) in ("None", "default", "tensorfloat32")
    if cfg["require_gpu"] and not gpus:
        raise NoGPU("no GPU seen (use --cpu-smoke or --allow-cpu to run on the CPU)")
    out["import_s"] = round(time.perf_counter() - t_start, 2)

    from cnnstudio.builtins.manager import load_registry
    from cnnstudio.core.model.models import build_model, parameter_counts, unfreeze_backbone
    from cnnstudio.core.model.spec import resolve_spec

    if cfg["precision"] == "mixed":
        keras.mixed_precision.set_global_policy("mixed_float16")  # before the model is built
    out["policy"] = keras.mixed_precision.global_policy().name

    t0 = time.perf_counter()
    registry = load_registry()
    spec = resolve_spec(registry, cfg["model"], input_size=cfg["size"], weights="none")
    if cfg["base"] == "trainable":
        spec.params["trainable"] = True
        spec = spec.validate(registry)
    model = build_model(spec, CLASSES, registry)
    if cfg["base"] == "trainable":
        unfreeze_backbone(model)  # batch norm frozen, as for a pretrained base fine-tuned whole
    out["params"] = parameter_counts(model)

    # What the studio's Trainer gets: Keras' default jit_compile="auto", resolved at compile.
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    out["auto_jit"] = bool(model.jit_compile)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=cfg["xla"])
    out["jit_compile"] = bool(model.jit_compile)  # False if Keras refused XLA for a layer
    out["optimizer"] = type(model.optimizer).__name__
    out["build_s"] = round(time.perf_counter() - t0, 2)

    rng = np.random.default_rng(0)
    size, batch = cfg["size"], cfg["batch"]
    x = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    y = rng.integers(0, CLASSES, (batch,), dtype=np.int32)
    if tf is not None:
        ds = tf.data.Dataset.from_tensors((x, y)).repeat().prefetch(2)
    else:
        class Same(keras.utils.PyDataset):  # the same batch, as many times as asked
            def __len__(self):
                return 1_000_000

            def __getitem__(self, i):
                return x, y

        ds = Same()

    timer = _epoch_timer(keras)
    t0 = time.perf_counter()
    model.fit(ds, steps_per_epoch=cfg["warmup"], epochs=1, verbose=0)
    out["warmup_s"] = round(time.perf_counter() - t0, 2)  # tracing + compilation + warm-up steps
    t0 = time.perf_counter()
    history = model.fit(ds, steps_per_epoch=cfg["steps"], epochs=cfg["epochs"], verbose=0, callbacks=[timer])
    out["timed_fit_s"] = round(time.perf_counter() - t0, 2)
    out["epoch_s"] = [round(t, 4) for t in timer.times]
    # The first timed epoch of a new fit still pays set-up (seen on an H200 with JAX: a third of
    # the later epochs' speed); the median of the later epochs is the steady state.
    steady = sorted(timer.times[1:] or timer.times)[len(timer.times[1:] or timer.times) // 2]
    out["images_per_s"] = round(cfg["steps"] * batch / steady, 1)
    out["step_ms"] = round(1000 * steady / cfg["steps"], 2)
    out["epoch_images_per_s"] = [round(cfg["steps"] * batch / t, 1) for t in timer.times]
    out["final_loss"] = float(history.history["loss"][-1])
    if gpus:
        try:
            if tf is not None:
                peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
            else:
                peak = gpus[0].memory_stats()["peak_bytes_in_use"]
            out["gpu_peak_mib"] = round(peak / 2**20)
        except Exception:  # best effort
            pass
    out["child_s"] = round(time.perf_counter() - t_start, 2)
    return out


class NoGPU(RuntimeError):
    pass


def _device_name(tf, gpus) -> str:
    if not gpus:
        return f"CPU ({os.cpu_count()} cores)"
    try:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name")
    except Exception:
        name = None
    return name or gpus[0].name


def _epoch_timer(keras):
    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()  # the previous epoch / fit ended synchronised

        def on_epoch_end(self, epoch, logs=None):
            for value in (logs or {}).values():  # reading the metrics waits for the device
                float(value)
            self.times.append(time.perf_counter() - self.t0)

    return EpochTimer()


def child_main(cfg_json: str) -> int:
    cfg = json.loads(cfg_json)
    try:
        result = run_config(cfg)
    except BaseException as exc:  # report, don't crash the parent's parsing
        traceback.print_exc()
        lines = str(exc).strip().splitlines()
        result = {"error": f"{type(exc).__name__}: {lines[0][:400] if lines else ''}",
                  "no_gpu": isinstance(exc, NoGPU)}
    print(RESULT + json.dumps(result), flush=True)
    return 0 if "error" not in result else 1


# ---------------------------------------------------------------------------------------------
# parent: every configuration, each in a fresh process


def nvidia_smi() -> str | None:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=15,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def run_child(cfg: dict, timeout: float, env: dict) -> dict:
    t0 = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(cfg)],
            capture_output=True, text=True, timeout=timeout, env=env, cwd=str(ROOT),
        )
    except subprocess.TimeoutExpired as exc:
        tail = _tail(exc.stderr)
        return {"error": f"timed out after {timeout:.0f} s", "stderr_tail": tail,
                "wall_s": round(time.perf_counter() - t0, 1)}
    wall = round(time.perf_counter() - t0, 1)
    result = None
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT):
            result = json.loads(line[len(RESULT):])
            break
    if result is None:
        result = {"error": f"the process exited with status {done.returncode} without a result"}
    if "error" in result:
        result["stderr_tail"] = _tail(done.stderr)
    result["wall_s"] = wall
    return result


def _tail(text, n: int = 12) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [line for line in (text or "").splitlines()
             if line.strip() and not GLOG_INFO.match(line) and "before absl::InitializeLog" not in line]
    return "\n".join(lines[-n:])


def configurations(args) -> list[dict]:
    """``--configs`` in its order, else bases x models x variants (trainable first by default)."""
    if args.configs:
        chosen = args.configs
    else:
        chosen = [(model, base, LABELS[v]) for base in args.bases for model in args.models
                  for v in VARIANTS if LABELS[v] in args.variants]
    by_label = {label: v for v, label in LABELS.items()}
    return [{"model": model, "base": base, "precision": by_label[label][0], "xla": by_label[label][1],
             "size": args.size, "batch": args.batch, "steps": args.steps, "epochs": args.epochs,
             "warmup": args.warmup, "require_gpu": not args.allow_cpu}
            for model, base, label in chosen]


def estimate_s(cfg: dict, done: list[dict], default: float) -> float:
    """Expected wall time of ``cfg`` from the finished runs: the same model and XLA setting, else
    the same model (half as long again for XLA's compilation), else ``default``."""
    ok = [r for r in done if "images_per_s" in r and r["model"] == cfg["model"]]
    same = [r["wall_s"] for r in ok if r["xla"] == cfg["xla"]]
    if same:
        return max(same)
    if ok:
        return max(r["wall_s"] for r in ok) * (1.5 if cfg["xla"] else 1.0)
    return default


def table_rows(results: list[dict], args) -> list[dict]:
    rows = []
    for base in args.bases:
        for model in args.models:
            mine = [r for r in results if r["model"] == model and r["base"] == base]
            if not mine:
                continue
            got = {LABELS[(r["precision"], r["xla"])]: r.get("images_per_s") for r in mine}
            status = {LABELS[(r["precision"], r["xla"])]: "ok" if r.get("images_per_s") else
                      "skipped" if r.get("skipped") else "failed" for r in mine}
            f32 = got.get("float32")
            rows.append({"model": model, "base": base, "status": status, **{k: got.get(k) for k in LABELS.values()},
                         "mixed/float32": _r(got.get("mixed"), f32), "xla/float32": _r(got.get("xla"), f32),
                         "mixed+xla/float32": _r(got.get("mixed+xla"), f32),
                         "mixed+xla/xla": _r(got.get("mixed+xla"), got.get("xla"))})
    return rows


def print_table(rows: list[dict], args) -> None:
    print()
    print(f"Training throughput, images/s ({args.size} px, batch {args.batch}, "
          f"{args.epochs}x{args.steps} timed steps after {args.warmup} warm-up steps; "
          "random weights: speed does not depend on the weights)")
    head = (f"{'model':<9} {'base':<10} {'float32':>9} {'mixed':>9} {'xla':>9} {'mixed+xla':>10}"
            f"   {'mixed/f32':>9} {'xla/f32':>8} {'mixed+xla/f32':>13} {'mixed+xla/xla':>13}")
    print(head)
    print("-" * len(head))
    for row in rows:
        def cell(label, row=row):
            state = row["status"].get(label, "n/a")
            return f"{row[label]:.0f}" if state == "ok" else state

        def rat(key, row=row):
            return f"{row[key]:.2f}x" if row[key] else "-"

        print(f"{row['model']:<9} {row['base']:<10} {cell('float32'):>9} {cell('mixed'):>9} {cell('xla'):>9} "
              f"{cell('mixed+xla'):>10}   {rat('mixed/float32'):>9} {rat('xla/float32'):>8} "
              f"{rat('mixed+xla/float32'):>13} {rat('mixed+xla/xla'):>13}")
    print("(n/a: not selected; failed: error or timeout, see above; skipped: out of --budget-s)")


def _r(a, b):
    return round(a / b, 3) if a and b else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="steps per timed epoch (default 20)")
    p.add_argument("--epochs", type=int, default=4, help="timed epochs; the median after the first counts (default 4)")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up steps, the first compiles (default 5)")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated: vgg16,resnet50")
    p.add_argument("--bases", default=",".join(BASES), help="comma-separated: trainable,frozen (in this order)")
    p.add_argument("--variants", default=",".join(LABELS.values()),
                   help="comma-separated: float32,mixed,xla,mixed+xla")
    p.add_argument("--configs", default="",
                   help="comma-separated model:base:variant, e.g. vgg16:trainable:mixed+xla; "
                        "overrides --models/--bases/--variants")
    p.add_argument("--budget-s", type=float, default=400.0,
                   help="skip configurations that would end after this many seconds (default 400)")
    p.add_argument("--config-timeout", type=float, default=150.0, help="seconds per configuration (default 150)")
    p.add_argument("--json", type=Path, help="also write the results here as JSON")
    p.add_argument("--cpu-smoke", action="store_true",
                   help="check on the CPU: 32 px, batch 4, 3 steps, 1 warm-up, GPU hidden; unless a "
                        "selection is given, --configs " + SMOKE_CONFIGS + " (under a minute)")
    p.add_argument("--allow-cpu", action="store_true",
                   help="run even if TensorFlow sees no GPU (otherwise the first configuration stops the run)")
    p.add_argument("--studio", action="store_true",
                   help="the studio's own training (cnnstudio train): --precision mixed against float32")
    p.add_argument("--studio-images", type=int, default=1280, help="images of the --studio run (default 1280)")
    args = p.parse_args(argv)
    if args.child:
        return child_main(args.child)

    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if args.cpu_smoke:
        given = argv if argv is not None else sys.argv[1:]
        args.size, args.batch, args.steps, args.epochs, args.warmup = 32, 4, 3, 1, 1
        selection = ("--configs", "--models", "--bases", "--variants")
        if not any(a.split("=")[0] in selection for a in given):
            args.configs = SMOKE_CONFIGS
        args.allow_cpu = True
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    if args.studio:
        return studio_main(args, env)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.bases = [b.strip() for b in args.bases.split(",") if b.strip()]
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for name, values, known in (("models", args.models, MODELS), ("bases", args.bases, BASES),
                                ("variants", args.variants, tuple(LABELS.values()))):
        bad = [v for v in values if v not in known]
        if bad or not values:
            p.error(f"--{name}: {', '.join(bad) or 'nothing chosen'}; choose from {', '.join(known)}")
    if args.configs:
        items = [tuple(c.strip().split(":")) for c in args.configs.split(",") if c.strip()]
        for item in items:
            if len(item) != 3 or item[0] not in MODELS or item[1] not in BASES or item[2] not in LABELS.values():
                p.error(f"--configs: {':'.join(item)!r} is not model:base:variant "
                        f"({'|'.join(MODELS)}:{'|'.join(BASES)}:{'|'.join(LABELS.values())})")
        args.configs = items
        args.models = [m for m in MODELS if any(i[0] == m for i in items)]
        args.bases = [b for b in BASES if any(i[1] == b for i in items)]

    t_start = time.perf_counter()
    deadline = t_start + args.budget_s
    smi = None if args.cpu_smoke else nvidia_smi()
    meta = {"nvidia_smi": smi, "size": args.size, "batch": args.batch, "steps": args.steps,
            "epochs": args.epochs, "warmup": args.warmup, "weights": "none (random; speed does not depend on them)",
            "python": sys.version.split()[0], "cpu_smoke": args.cpu_smoke}
    print(f"nvidia-smi: {smi or 'not available'}", flush=True)
    configs = configurations(args)
    print(f"{len(configs)} configurations, each in a fresh process; budget {args.budget_s:.0f} s", flush=True)

    results: list[dict] = []

    def save() -> None:
        if not args.json:
            return
        first = next((r for r in results if "device" in r), {})
        meta.update({k: first[k] for k in ("device", "tf_version", "keras_version", "tf32", "auto_jit")
                     if k in first})
        data = {"meta": meta, "table": table_rows(results, args), "results": results,
                "total_s": round(time.perf_counter() - t_start, 1)}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2))

    for i, cfg in enumerate(configs, 1):
        label = f"[{i}/{len(configs)}] {cfg['model']} {cfg['base']} {LABELS[(cfg['precision'], cfg['xla'])]}"
        left = deadline - time.perf_counter()
        need = estimate_s(cfg, results, default=15.0 if args.cpu_smoke else 45.0)
        if left < need:
            print(f"{label}: skipped (time budget: {left:.0f} s left, about {need:.0f} s needed)", flush=True)
            results.append({**cfg, "skipped": "time budget"})
            save()
            continue
        first_ok = not any("device" in r for r in results)
        result = {**cfg, **run_child(cfg, min(args.config_timeout, left), env)}
        results.append(result)
        if "images_per_s" in result:
            if first_ok:
                print(_describe(result, smi), flush=True)
            jit_note = "" if result["jit_compile"] == cfg["xla"] else "  (Keras turned XLA off!)"
            mem = f", peak {result['gpu_peak_mib']} MiB" if "gpu_peak_mib" in result else ""
            print(f"{label}: {result['images_per_s']:.1f} img/s ({result['step_ms']:.1f} ms/step, "
                  f"epochs {result['epoch_images_per_s']}), warm-up {result['warmup_s']:.1f} s, "
                  f"process {result['wall_s']:.1f} s{mem}, {result['optimizer']}{jit_note}", flush=True)
        else:
            print(f"{label}: FAILED after {result['wall_s']:.1f} s: {result['error']}", flush=True)
            if result.get("stderr_tail") and not result.get("no_gpu"):
                print("    " + result["stderr_tail"].replace("\n", "\n    "), flush=True)
        save()
        if result.get("no_gpu"):
            print("stopping: no GPU", flush=True)
            break

    first = next((r for r in results if "device" in r), None)
    print()
    print(_describe(first, smi) if first else "no configuration ran")
    print_table(table_rows(results, args), args)
    save()
    total = time.perf_counter() - t_start
    print(f"\ntotal {total:.0f} s" + (f"; wrote {args.json}" if args.json else ""))
    return 0 if first else 1


def studio_main(args, env: dict) -> int:
    """The studio's own trainer, mixed precision against float32 (see the module's docstring)."""
    import csv
    import statistics
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import make_jpeg_folder

    probe = subprocess.run([sys.executable, "-c", "from cnnstudio.core.tf import tf; "
                            "print(len(tf().config.list_physical_devices('GPU')))"],
                           capture_output=True, text=True, env=env, cwd=str(ROOT))
    gpus = int(probe.stdout.strip().splitlines()[-1]) if probe.returncode == 0 and probe.stdout.strip() else 0
    if not gpus and not args.allow_cpu:
        print("studio: skipped: TensorFlow sees no GPU here; mixed precision is for GPUs (on the CPU "
              "--precision auto trains in float32); --allow-cpu runs it anyway")
        return 0
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-studio-") as tmp:
        data = make_jpeg_folder(Path(tmp) / "data", args.studio_images, args.size, classes=CLASSES)
        for precision in ("float32", "mixed"):
            out = Path(tmp) / f"run-{precision}"
            t0 = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "cnnstudio", "train", str(data), "--out", str(out), "--model", "vgg16",
                 "--mode", "scratch", "--image-size", str(args.size), "--batch-size", str(args.batch),
                 "--epochs", str(args.epochs), "--patience", "0", "--val-split", "0.1", "--test-split", "0.1",
                 "--precision", precision], capture_output=True, text=True, env=env, cwd=str(ROOT))
            wall = time.perf_counter() - t0
            if done.returncode != 0:
                print(f"studio --precision {precision}: FAILED after {wall:.0f} s:\n    {_tail(done.stderr)}")
                results[precision] = {"error": _tail(done.stderr), "wall_s": round(wall, 1)}
                continue
            with open(out / "history.csv", newline="") as f:
                seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
            config = json.loads((out / "config.json").read_text())
            compute = json.loads((out / "metrics.json").read_text())["compute"]
            n_train = len(config["split"]["train"])
            rate = n_train / statistics.median(seconds[1:] or seconds)
            results[precision] = {"images_per_s": round(rate, 1), "epoch_s": seconds, "wall_s": round(wall, 1),
                                  "compute": compute, "device": config.get("device"), "n_train": n_train}
            print(f"studio --precision {precision}: {rate:.0f} images/s ({compute['precision']}, XLA "
                  f"{'on' if compute.get('jit') else 'off'}; epochs {', '.join(f'{t:.2f}' for t in seconds)} s; "
                  f"process {wall:.0f} s) on {config.get('device')}", flush=True)
    f32, mixed = (results.get(k, {}).get("images_per_s") for k in ("float32", "mixed"))
    if f32 and mixed:
        print(f"studio: mixed/float32 = {mixed / f32:.2f}x (vgg16 trained whole, {args.size} px, batch {args.batch})")
        if not gpus:
            print("(on the CPU: float16 arithmetic is emulated, so mixed is slower; the figure checks the plumbing)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"studio": results, "gpus": gpus, "size": args.size, "batch": args.batch,
                                         "epochs": args.epochs, "images": args.studio_images}, indent=2))
    return 0 if f32 and mixed else 1


def _describe(result: dict, smi: str | None) -> str:
    return (f"device: {result['device']}   nvidia-smi: {smi or 'n/a'}\n"
            f"TensorFlow {result['tf_version']}   Keras {result['keras_version']} ({result.get('backend')})   "
            f"TF32 for float32 convolutions/matmuls: {'on' if result['tf32'] else 'off'}   "
            f"the studio's jit_compile='auto' means XLA {'on' if result['auto_jit'] else 'off'} here")


if __name__ == "__main__":
    sys.exit(main())
