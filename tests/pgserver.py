"""A throwaway PostgreSQL server on loopback, for the tests of searches shared through a database.

The server runs from the installed PostgreSQL binaries (``initdb``, ``pg_ctl``) in a temporary
data folder, on a free port of 127.0.0.1, with trust authentication. PostgreSQL refuses to run as
root: under root it is started as the ``postgres`` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path


def find_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl (PATH first, then Debian's versioned folders), or None."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server():
    """Yield the URL of a fresh database on a server that stops when the block ends.

    Raises RuntimeError (with the server's log) when it cannot be started."""
    bin_dir = find_binaries()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL binaries (initdb, pg_ctl) found")
    folder = Path(tempfile.mkdtemp(prefix="cnnstudio-pg-"))
    data = folder / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        os.chmod(folder, 0o700)
        runuser = shutil.which("runuser")
        as_user = [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-s", "/bin/sh", "-c"]

    def run(*argv):
        cmd = [str(a) for a in argv]
        if as_user and as_user[0] == "su":
            cmd = as_user + [" ".join(f"'{c}'" for c in cmd)]
        else:
            cmd = as_user + cmd
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=folder)

    port = _free_port()
    log = folder / "server.log"
    try:
        done = run(bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
        options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off -c full_page_writes=off"
        done = run(bin_dir / "pg_ctl", "-D", data, "-o", options, "-l", log, "-w", "-t", "60", "start")
        if done.returncode != 0:
            text = log.read_text() if log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()} {text[-2000:]}")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
