"""Which devices of this machine a run trains on, in which precision, with or without XLA.

``devices`` (a :class:`~cnnstudio.core.training.config.TrainConfig` field) is one of

* ``auto``: every GPU TensorFlow sees, else the CPU;
* ``cpu``: the CPU, even where there are GPUs;
* ``N``: the first N GPUs; on a machine without GPUs, N > 1 splits the CPU into N logical
  devices (for trying several devices out: on one CPU they share its cores);
* a list of GPU indices, ``0,2`` (one GPU by its index: ``gpu:1``).

More than one device trains under ``tf.distribute.MirroredStrategy`` with Keras' own
``model.fit``; the batch size stays the global batch, split among the replicas. The CPU is split
by :func:`prepare`, which must run before TensorFlow's runtime starts (the command line does).

``precision``: ``auto`` (``mixed_float16`` on GPUs of compute capability 7.0 and above, float32
elsewhere), ``float32`` or ``mixed`` (Keras' ``mixed_float16`` policy; the classifier's output
layer stays float32). ``jit``: XLA compilation, ``auto`` (Keras' default), ``on`` or ``off``.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field

from cnnstudio.core.errors import StudioError

PRECISIONS = ("auto", "float32", "mixed")
JIT_MODES = ("auto", "on", "off")
DEVICE_HELP = "auto, cpu, a number of devices N, or GPU indices such as 0,2 (one GPU: gpu:1)"

_LIST = re.compile(r"^(gpu:)?\d+(,\d+)*,?$")


class DeviceError(StudioError):
    """A device choice this machine cannot honour, or that is not one at all."""


@dataclass(frozen=True)
class DeviceChoice:
    """What ``devices`` asks for: ``kind`` is auto, cpu, count or gpus."""

    text: str
    kind: str
    count: int = 0
    gpus: tuple[int, ...] = ()


def parse_devices(text) -> DeviceChoice:
    """The choice ``text`` names; a :class:`DeviceError` naming it and why otherwise."""
    raw = str(text).strip()
    value = raw.lower()
    if value in ("auto", "cpu"):
        return DeviceChoice(value, value)
    if value.isdigit() and not value.startswith("gpu:"):
        n = int(value)
        if n < 1:
            raise DeviceError(f"devices {raw!r}: a number of devices must be at least 1")
        return DeviceChoice(value, "count", count=n)
    if _LIST.match(value):
        gpus = tuple(int(i) for i in value.removeprefix("gpu:").split(",") if i)
        if len(set(gpus)) != len(gpus):
            raise DeviceError(f"devices {raw!r}: a GPU is listed twice")
        return DeviceChoice(value, "gpus", gpus=gpus)
    raise DeviceError(f"devices {raw!r}: not a device choice; expected {DEVICE_HELP}")


def check_options(devices, precision, jit) -> None:
    """The three choices' spelling, before anything starts TensorFlow."""
    parse_devices(devices)
    if precision not in PRECISIONS:
        raise StudioError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if jit not in JIT_MODES:
        raise StudioError(f"jit must be one of {', '.join(JIT_MODES)}, not {jit!r}")


def prepare(devices) -> None:
    """Start TensorFlow with the CPU split into N logical devices where ``devices`` is N > 1
    and the machine has no GPU; only where TensorFlow has not started yet in this process
    (:func:`resolve` names the problem otherwise)."""
    from cnnstudio.core.tf.runtime import TensorFlowStarted, tf

    choice = parse_devices(devices)
    if choice.kind != "count" or choice.count < 2:
        return

    def split(T):
        if T.config.list_physical_devices("GPU"):
            return
        cpus = T.config.list_physical_devices("CPU")
        T.config.set_logical_device_configuration(
            cpus[0], [T.config.LogicalDeviceConfiguration() for _ in range(choice.count)])

    with contextlib.suppress(TensorFlowStarted):
        tf(setup=split)


@dataclass
class Compute:
    """The resolved choice: ``strategy`` (None: TensorFlow's default device) and what a run records."""

    strategy: object | None
    devices: list[str]
    kind: str  # "GPU" or "CPU"
    precision: str  # the Keras dtype policy: float32 or mixed_float16
    asked: dict = field(default_factory=dict)
    label: str = ""

    @property
    def replicas(self) -> int:
        return getattr(self.strategy, "num_replicas_in_sync", 1)

    def record(self, jit=None) -> dict:
        """``{"compute": {...}}`` for config.json and metrics.json."""
        rec = {"strategy": type(self.strategy).__name__ if self.strategy is not None else "default",
               "devices": list(self.devices), "replicas": self.replicas, "precision": self.precision,
               "asked": dict(self.asked)}
        if jit is not None:
            rec["jit"] = bool(jit)
        return {"compute": rec}

    @contextlib.contextmanager
    def policy(self):
        """Keras' dtype policy of this run while its models are built or loaded (the process's
        global policy is put back afterwards), under the build lock: no other build sees it."""
        if self.precision == "float32":
            yield
            return
        from cnnstudio.core.tf import keras
        from cnnstudio.core.tf.seeding import BUILD_LOCK

        mp = keras().mixed_precision
        with BUILD_LOCK:
            saved = mp.global_policy()
            mp.set_global_policy(self.precision)
            try:
                yield
            finally:
                mp.set_global_policy(saved)


def gpu_names() -> list[str]:
    """The GPUs TensorFlow sees, by their names where it tells them ("" where not)."""
    from cnnstudio.core.tf import tf

    T = tf()
    names = []
    for gpu in T.config.list_physical_devices("GPU"):
        try:
            names.append(T.config.experimental.get_device_details(gpu).get("device_name") or "")
        except Exception:  # noqa: BLE001 - details are best effort
            names.append("")
    return names


def _short(name: str) -> str:
    """``/job:localhost/replica:0/task:0/device:GPU:1`` -> ``GPU:1``."""
    return name.split("device:")[-1]


def resolve(devices="auto", precision="auto", jit="auto") -> Compute:
    """The strategy and precision for these choices on this machine (TensorFlow started)."""
    from cnnstudio.core.tf import device_description, tf

    check_options(devices, precision, jit)
    choice = parse_devices(devices)
    T = tf()
    gpus = [d.name for d in T.config.list_logical_devices("GPU")]
    cpus = [d.name for d in T.config.list_logical_devices("CPU")]
    what = f"devices {choice.text!r}"
    if choice.kind == "cpu" or (not gpus and choice.kind == "auto"):
        names, kind = cpus[:1], "CPU"
    elif choice.kind == "auto":
        names, kind = gpus, "GPU"
    elif choice.kind == "count" and gpus:
        if choice.count > len(gpus):
            raise DeviceError(f"{what}: this machine has {len(gpus)} GPU(s)")
        names, kind = gpus[:choice.count], "GPU"
    elif choice.kind == "count":
        if choice.count > len(cpus):
            raise DeviceError(f"{what}: this machine has no GPU, and its CPU can be split into {choice.count} "
                              "devices only before TensorFlow starts (train from the command line)")
        names, kind = cpus[:choice.count], "CPU"
    else:
        if not gpus:
            raise DeviceError(f"{what}: this machine has no GPU")
        missing = [i for i in choice.gpus if i >= len(gpus)]
        if missing:
            raise DeviceError(f"{what}: there is no GPU {missing[0]} (this machine has {len(gpus)}: "
                              f"0 to {len(gpus) - 1})")
        names, kind = [gpus[i] for i in choice.gpus], "GPU"
    default = (gpus or cpus)[0]
    if len(names) > 1:
        strategy = T.distribute.MirroredStrategy(devices=names)
    elif names[0] != default:
        strategy = T.distribute.OneDeviceStrategy(names[0])
    else:
        strategy = None
    policy = _precision(precision, kind, names, T)
    short = [_short(n) for n in names]
    if len(names) > 1:
        label = f"{len(names)} {kind} devices ({', '.join(short)}), MirroredStrategy"
    elif strategy is None:
        label = device_description()
    else:
        label = f"{kind} ({short[0]})"
    if policy != "float32":
        label += f", {policy}"
    return Compute(strategy, short, kind, policy, {"devices": choice.text, "precision": precision, "jit": jit},
                   label)


def for_strategy(strategy, precision="auto", jit="auto") -> Compute:
    """A cluster's strategy (made when it was joined) with the run's precision."""
    from cnnstudio.core.tf import tf

    check_options("auto", precision, jit)
    T = tf()
    gpus = [d.name for d in T.config.list_logical_devices("GPU")]
    names = gpus or [d.name for d in T.config.list_logical_devices("CPU")][:1]
    kind = "GPU" if gpus else "CPU"
    return Compute(strategy, [_short(n) for n in names], kind, _precision(precision, kind, names, T),
                   {"devices": "auto", "precision": precision, "jit": jit})


def _precision(precision: str, kind: str, names: list[str], T) -> str:
    if precision == "float32":
        return "float32"
    if precision == "mixed":
        return "mixed_float16"
    if kind != "GPU":
        return "float32"
    physical = T.config.list_physical_devices("GPU")
    for name in names:
        index = int(name.rsplit(":", 1)[-1])
        try:
            details = T.config.experimental.get_device_details(physical[index]) if index < len(physical) else {}
        except Exception:  # noqa: BLE001 - details are best effort: float32 is always right
            details = {}
        if tuple(details.get("compute_capability") or (0, 0)) < (7, 0):
            return "float32"
    return "mixed_float16"


def jit_compile(jit: str):
    """``model.compile``'s ``jit_compile`` for the choice."""
    return {"auto": "auto", "on": True, "off": False}[jit]
