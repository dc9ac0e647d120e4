"""Training one run on several machines: a ``TF_CONFIG`` cluster under ``MultiWorkerMirroredStrategy``.

Every machine runs the same ``cnnstudio train`` command with its own ``TF_CONFIG`` (from
``--cluster FILE`` or the environment). The chief (the ``chief`` task, else worker 0) writes the
run folder; the other workers train into a private temporary folder that is removed at the end,
so they write nothing the user keeps. Before the first step the workers compare, through the
strategy's own collectives, the content fingerprint of their dataset and the run they were
asked for; a worker with other files or other options is named and every worker stops.

Keras 3's ``model.fit`` does not run under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585:
``Attempt to convert a value (PerReplica...)``), so a cluster trains through the studio's own
step (:mod:`cnnstudio.core.training.loop`), which keeps fit's callbacks, checkpoints and early
stopping. A worker that dies makes the collectives of the others fail at once (TensorFlow reports
``UnavailableError``); :func:`lost_worker` turns that into one line on every survivor.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cnnstudio.core.errors import StudioError

TASK_TYPES = ("chief", "worker")


class ClusterError(StudioError):
    """A cluster description that cannot be used, or a cluster that cannot go on; one line."""


@dataclass(frozen=True)
class Cluster:
    """The machines of one training and which of them this process is."""

    tasks: tuple[tuple[str, str], ...]  # (task type, address) in rank order: the chief first
    rank: int  # this process's place in ``tasks``
    source: str  # the file it came from, or "TF_CONFIG"
    config: dict  # the TF_CONFIG as TensorFlow reads it

    @property
    def size(self) -> int:
        return len(self.tasks)

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    def name(self, rank: int | None = None) -> str:
        """``worker 1 (10.0.0.2:2222)``, or ``the chief (…)`` for rank 0."""
        rank = self.rank if rank is None else rank
        kind, address = self.tasks[rank]
        index = rank - 1 if self.tasks[0][0] == "chief" and kind == "worker" else rank
        who = "the chief" if rank == 0 else f"{kind} {index}"
        return f"{who} ({address})"

    def record(self) -> dict:
        """What the run's config and metrics keep about the cluster."""
        return {"workers": self.size, "addresses": [address for _, address in self.tasks], "source": self.source}


def read_cluster(path: str | os.PathLike | None = None, environ=None) -> Cluster | None:
    """The cluster of ``--cluster FILE``, else of ``TF_CONFIG`` in the environment, else None.

    Checked before TensorFlow sees it: a ``cluster`` with a ``worker`` list (and at most one
    ``chief``) of ``host:port`` addresses, and a ``task`` naming one of them."""
    environ = os.environ if environ is None else environ
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ClusterError(f"{source}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ClusterError(f"{source}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    elif environ.get("TF_CONFIG", "").strip():
        source, text = "TF_CONFIG", environ["TF_CONFIG"]
    else:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClusterError(f"{source}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return _checked(config, source)


def _checked(config, source: str) -> Cluster:
    def fail(reason: str):
        raise ClusterError(f"{source}: {reason}")

    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        fail('expected {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}')
    cluster = config["cluster"]
    unknown = sorted(set(cluster) - set(TASK_TYPES))
    if unknown:
        fail(f"job {unknown[0]!r} is not supported: a cluster has one chief at most and workers")
    for kind in TASK_TYPES:
        addresses = cluster.get(kind, [])
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            fail(f"cluster.{kind} must be a list of \"host:port\" addresses")
        for address in addresses:
            if not re.fullmatch(r"\[?[A-Za-z0-9_.:-]+\]?:\d{1,5}", address):
                fail(f"cluster.{kind}: {address!r} is not a host:port address")
    if len(cluster.get("chief", [])) > 1:
        fail("cluster.chief holds more than one address")
    tasks = tuple([("chief", a) for a in cluster.get("chief", [])] + [("worker", a) for a in cluster.get("worker", [])])
    if not tasks:
        fail("the cluster lists no worker")
    addresses = [a for _, a in tasks]
    if len(set(addresses)) != len(addresses):
        fail("an address is listed twice")
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") not in TASK_TYPES:
        fail('task must be {"type": "worker" or "chief", "index": N}')
    index = task.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster.get(task["type"], [])):
        fail(f"task.index {index!r} is not one of the {len(cluster.get(task['type'], []))} {task['type']} address(es)")
    rank = index if task["type"] == "chief" else index + len(cluster.get("chief", []))
    return Cluster(tasks, rank, source, {"cluster": cluster, "task": {"type": task["type"], "index": index}})


def start(cluster: Cluster, timeout_seconds: float | None = None):
    """Join the cluster: ``MultiWorkerMirroredStrategy`` over its machines. Must come before
    anything else uses TensorFlow in this process (collectives are set up when it starts)."""
    os.environ["TF_CONFIG"] = json.dumps(cluster.config)
    from cnnstudio.core.tf.runtime import TensorFlowStarted, tf

    joined = []

    def join(T):
        options = T.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_seconds)
        joined.append(T.distribute.MultiWorkerMirroredStrategy(communication_options=options))

    try:
        tf(setup=join)
    except TensorFlowStarted:
        raise ClusterError(f"{cluster.source}: a cluster must be joined before TensorFlow starts; "
                           "train on a cluster from the command line") from None
    except (RuntimeError, ValueError) as exc:
        raise ClusterError(f"{cluster.source}: cannot join the cluster as {cluster.name()} "
                           f"({_first_line(exc)})") from None
    return joined[0]


def run_digest(*parts) -> str:
    """A digest of what a worker was asked to train (split, model, options): every worker's must match."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def check_same_run(strategy, cluster: Cluster, fingerprint: dict, run: str) -> None:
    """Compare, on every worker at once, the dataset fingerprint and the run digest with the
    chief's; raise :class:`ClusterError` (the same line on every worker) naming who differs."""
    from cnnstudio.core.tf import tf

    T = tf()
    mine = [fingerprint["files"], *_halves(fingerprint["sha256"]), *_halves(run)]
    local = T.constant([mine], dtype=T.int64)
    try:
        # In a tf.function: the collective run eagerly costs more and says so on the terminal.
        gather = T.function(lambda: strategy.gather(strategy.run(lambda: local), axis=0), autograph=False)
        rows = gather().numpy().tolist()
    except Exception as exc:  # noqa: BLE001 - a worker that went away before the first step
        raise lost_worker(cluster, exc) or exc
    per_worker = max(1, len(rows) // cluster.size)
    workers = rows[::per_worker]
    chief = workers[0]
    for rank, row in enumerate(workers[1:], 1):
        who = cluster.name(rank)
        if row[0] != chief[0]:
            raise ClusterError(f"the dataset on {who} differs from the chief's: {row[0]:,} files against "
                               f"{chief[0]:,}; every machine must see the same files")
        if row[1:3] != chief[1:3]:
            raise ClusterError(f"the dataset on {who} differs from the chief's: the same number of files "
                               f"({row[0]:,}) with other contents or classes "
                               f"(fingerprint {_hex(row[1])} against {_hex(chief[1])})")
        if row[3:5] != chief[3:5]:
            raise ClusterError(f"{who} was asked for another run than the chief (other options, split or "
                               "model): run the same command on every machine")


def barrier(strategy, cluster: Cluster) -> None:
    """Return when every worker has reached this call; :class:`ClusterError` when one went away."""
    from cnnstudio.core.tf import tf

    T = tf()
    try:
        meet = T.function(lambda: strategy.reduce("SUM", strategy.run(lambda: T.constant(1.0)), axis=None),
                          autograph=False)
        meet().numpy()
    except Exception as exc:  # noqa: BLE001 - a worker that died while the chief wrote the run
        raise lost_worker(cluster, exc) or exc


def lost_worker(cluster: Cluster, exc: BaseException) -> ClusterError | None:
    """The line for a collective that failed because a worker died or cannot be reached, or None
    when ``exc`` is something else."""
    from cnnstudio.core.tf import tf

    T = tf()
    lost = (T.errors.UnavailableError, T.errors.DeadlineExceededError, T.errors.CancelledError,
            T.errors.AbortedError)
    text = str(exc)
    if not isinstance(exc, lost) and "Collective ops is aborted" not in text:
        return None
    chiefs = 1 if cluster.tasks[0][0] == "chief" else 0
    ranks = {int(i) + (chiefs if job == "worker" else 0)
             for job, i in re.findall(r"/job:(worker|chief)/replica:0/task:(\d+)", text)}
    named = [cluster.name(r) for r in sorted(ranks) if r < cluster.size and r != cluster.rank]
    who = named[0] if len(named) == 1 else "another worker"
    return ClusterError(f"the cluster lost {who}: training ends on every machine; run the same command "
                        "with --resume on every machine to go on from the chief's last checkpoint")


def _halves(hexdigest: str) -> list[int]:
    raw = bytes.fromhex(hexdigest)[:16]
    return [int.from_bytes(raw[:8], "big", signed=True), int.from_bytes(raw[8:16], "big", signed=True)]


def _hex(value: int) -> str:
    return value.to_bytes(8, "big", signed=True).hex()[:8]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
