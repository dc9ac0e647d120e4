"""Where a search's (or a cross-validation's) trials live: an Optuna storage named by a URL.

Every process given the same storage and study name shares one study, so any number of them,
on one machine or many, work on one search. The URL forms:

- none: ``OUT/study.db``, the search folder's own SQLite file (one process at a time);
- ``sqlite:///PATH``: a SQLite file (the processes of one machine);
- ``postgresql://USER:PASSWORD@HOST:PORT/DB`` or ``mysql://...``: a database server, for several
  machines (drivers: ``pip install "cnnstudio[cluster]"``; ``mysql://`` uses PyMySQL);
- ``journal:PATH`` or a path ending in ``.log``: Optuna's journal file, for a shared file system
  without a database server.

A server or SQLite storage beats a heartbeat for each running trial: when a worker dies, the
others see its trial go quiet for the grace period, fail it, and run it again as a new trial
(Optuna's ``RetryHeartbeatStaleTrialCallback``). Optuna's journal storage has no heartbeat: there a
dead worker's trial stays "running" (and counted), and the other workers end without it.

Optuna is imported only when a storage is opened.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from cnnstudio.core.errors import StudioError

DEFAULT_HEARTBEAT = 60.0  # seconds between a running trial's heartbeats
RETRIES = 3  # times one trial is run again after its worker died
_DRIVERS = {"postgresql": ("psycopg", "PostgreSQL"), "mysql": ("pymysql", "MySQL")}


class StorageError(StudioError):
    """A storage URL that cannot be used: malformed, unreachable, or without its driver."""


def masked(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and records."""
    return re.sub(r"^([A-Za-z0-9+.-]+://[^:/@]*:)[^@]*@", r"\1***@", str(url))


def journal_path(url: str) -> Path | None:
    """The journal file a URL names (``journal:PATH`` or ``PATH.log``), else None."""
    if url.startswith("journal:"):
        return Path(url.removeprefix("journal:").removeprefix("//"))
    if "://" not in url and url.endswith(".log"):
        return Path(url)
    return None


def kind(url: str | None) -> str:
    """``sqlite``, ``postgresql``, ``mysql`` or ``journal``; a :class:`StorageError` for anything else."""
    if url is None:
        return "sqlite"
    if journal_path(url) is not None:
        return "journal"
    scheme = url.split("://", 1)[0] if "://" in url else ""
    base = scheme.split("+", 1)[0]
    if base in ("sqlite", "postgresql", "mysql"):
        return base
    if base == "postgres":
        raise StorageError(f"{masked(url)}: write postgresql://, not postgres:// (the form SQLAlchemy reads)")
    raise StorageError(f"{masked(url)}: not a storage URL; give sqlite:///PATH, postgresql://USER@HOST/DB, "
                       "mysql://USER@HOST/DB, or journal:PATH (a file on a shared file system)")


def has_heartbeat(url: str | None) -> bool:
    """Whether a dead worker's trial is noticed and retried on this storage (not on a journal file)."""
    return kind(url) != "journal"


def open_storage(url: str | None, default_file: Path, heartbeat: float | None = DEFAULT_HEARTBEAT):
    """The Optuna storage ``url`` names (``default_file``, a SQLite file, when None).

    With ``heartbeat`` (seconds) a server or SQLite storage records a heartbeat for each running
    trial; a trial silent for twice that long is failed and retried once by the next worker that
    looks. Any failure is a :class:`StorageError` naming the URL (password masked) and the reason.
    """
    import warnings

    import optuna

    with warnings.catch_warnings():
        # Heartbeats and their retries are marked experimental in Optuna; they are what sharing needs.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _open(optuna, url, default_file, heartbeat)


def _open(optuna, url: str | None, default_file: Path, heartbeat: float | None):
    if url is None:
        url = f"sqlite:///{Path(default_file).as_posix()}"
    shown = masked(url)
    what = kind(url)
    if what == "journal":
        path = journal_path(url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        except OSError as exc:
            raise StorageError(f"{shown}: cannot open the journal file ({exc.strerror or exc})") from None
    url = _with_driver(url, what)
    kwargs = {}
    if heartbeat:
        kwargs = dict(heartbeat_interval=max(1, round(heartbeat)), grace_period=max(2, round(2 * heartbeat)),
                      heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=RETRIES))
    engine = {"pool_pre_ping": True}
    if what == "sqlite":
        path = Path(url.split(":///", 1)[1]) if ":///" in url else None
        if path is not None and not path.parent.exists():
            raise StorageError(f"{shown}: no such folder {path.parent}")
        engine = {"connect_args": {"timeout": 60}}  # several processes write one file: wait for the lock
    # Two processes starting on one new database both create Optuna's tables; the slower one may
    # trip over the faster one's half-made schema, and succeeds when it tries again.
    for attempt in range(3):
        try:
            with _quiet_sqlalchemy():
                return optuna.storages.RDBStorage(url, engine_kwargs=engine, **kwargs)
        except ImportError as exc:
            module, name = _DRIVERS.get(what, (exc.name, what))
            if "+" in url.split("://", 1)[0]:
                module = url.split("://", 1)[0].split("+", 1)[1]
            raise StorageError(f"{shown}: the {name} driver ({module}) is not installed; "
                               "pip install \"cnnstudio[cluster]\"") from None
        except Exception as exc:  # SQLAlchemy's errors: unreachable, refused, bad database, bad URL
            reason = reason_of(exc)
            if attempt < 2 and _schema_race(reason):
                time.sleep(0.5 + attempt)
                continue
            raise StorageError(f"{shown}: {reason}") from None
    raise AssertionError("unreachable")


def _with_driver(url: str, what: str) -> str:
    """A URL without a driver gets the ``cluster`` extra's: psycopg (or an installed psycopg2)
    for ``postgresql://``, PyMySQL for ``mysql://`` (SQLAlchemy's own defaults vary by version)."""
    import importlib.util

    if what == "mysql" and url.startswith("mysql://"):
        return "mysql+pymysql://" + url.removeprefix("mysql://")
    if what == "postgresql" and url.startswith("postgresql://"):
        psycopg2 = importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None
        return f"postgresql+{'psycopg2' if psycopg2 else 'psycopg'}://" + url.removeprefix("postgresql://")
    return url


def reason_of(exc: Exception) -> str:
    """The first lines of what a database driver (or SQLAlchemy) said, on one line."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # psycopg2 says 'connection to server at "127.0.0.1", port 1 failed: Connection refused ...'
    return "; ".join(lines[:2]) if lines else type(exc).__name__


def _schema_race(reason: str) -> bool:
    return any(s in reason for s in ("already exists", "duplicate key", "Duplicate", "UNIQUE constraint"))


class _quiet_sqlalchemy:
    """Alembic logs each migration step at INFO; a storage opens without a word."""

    def __enter__(self):
        import logging

        self._logger = logging.getLogger("alembic")
        self._level = self._logger.level
        self._logger.setLevel(logging.WARNING)

    def __exit__(self, *exc):
        self._logger.setLevel(self._level)
        return False


def close(storage) -> None:
    """Let go of a storage's database connections (a SQLite file can then be removed)."""
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()
