"""Files that hold case data or keys are readable by their owner only.

A folder is made 0700 and a file 0600 *before* anything is written to it, so there is no
window in which another local user can open it; an existing file or folder with wider bits is
narrowed. SQLite creates its -wal and -shm files with the main database file's mode, so a
database created here keeps its companions private too.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) and make it 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    _narrow(path, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty and 0600 if it does not exist, else narrow its mode to 0600."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        _narrow(path, PRIVATE_FILE)
    else:
        os.close(fd)
    return path


def private_sqlite(path: Path) -> Path:
    """A SQLite database file created 0600 (its -wal/-shm follow), companions narrowed too."""
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            _narrow(path.with_name(path.name + suffix), PRIVATE_FILE)
    return path


def _private_temp(path: Path, data: bytes) -> Path:
    """``data`` in a synced 0600 temp file beside ``path`` (its folder made 0700 first)."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def write_private_once(path: Path, data: bytes) -> bytes:
    """Write ``data`` to a new 0600 file, or return what another process wrote there first.

    The bytes go to a private temp file that is then hard-linked into place: the link fails
    if ``path`` exists, so concurrent first callers agree on one content, never a half file.
    """
    tmp = _private_temp(path, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        _narrow(path, PRIVATE_FILE)
        return path.read_bytes()
    finally:
        tmp.unlink()
    return data


def write_private(path: Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically, as a 0600 file in a 0700 folder."""
    _private_temp(path, data).replace(path)
    return path


def _narrow(path: Path, mode: int) -> None:
    if stat.S_IMODE(path.stat().st_mode) & ~mode:
        path.chmod(mode)
