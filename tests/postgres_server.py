"""A real PostgreSQL for the tests: ``initdb`` and ``pg_ctl`` in a temp dir, on a loopback port.

Debian's ``postgresql`` package (installed by ``.ci/run``) puts the binaries in
``/usr/lib/postgresql/<major>/bin``; they are also found on PATH. ``initdb`` refuses to run as
root, so as root the cluster belongs to the package's ``postgres`` user (``runuser``). Trust
authentication on 127.0.0.1 only; the socket lives in the temp dir. Without the binaries the
tests that need it fail, unless ``PHARMALANE_SKIP_POSTGRES=1`` (a laptop without them).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg


def postgres_bin() -> Path | None:
    """The folder holding initdb and pg_ctl (the newest Debian major first), or None."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_major, reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).resolve().parent)
    return next((c for c in candidates if (c / "initdb").is_file()), None)


def _major(folder: Path) -> int:
    name = folder.parent.name
    return int(name) if name.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextmanager
def running_postgres(binaries: Path) -> Iterator[str]:
    """A fresh cluster, started; yields the URL of its ``postgres`` database; stopped after."""
    root = Path(tempfile.mkdtemp(prefix="pharmalane-pg-"))
    data, port = root / "data", _free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    run = {"check": True, "capture_output": True, "timeout": 120}
    initdb = [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
    subprocess.run(_as_owner([*initdb, "--no-sync", "-E", "UTF8", "--locale=C"]), **run)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
    options += " -c max_connections=200"
    pg_ctl = str(binaries / "pg_ctl")
    subprocess.run(
        _as_owner([pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]),
        **run,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_owner([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]), **run)
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(server_url: str) -> str:
    """A new empty database on the server; its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"
