"""Names that become file names, and the rule that every file the harness writes lies inside
the folder it was told to write to.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from harness.errors import ConfigError

# Letters, digits, "_", "-" and "." (not first, so no hidden files and no "." or "..").
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")
_UMASK_LOCK = threading.Lock()
_umask: int | None = None


def check_name(name: str, what: str) -> str:
    """A name used as a file or folder name: letters, digits, _ - . and no separators."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{what} {name!r} is not allowed: use letters, digits, '_', '-' and "
                          f"'.' (not first), at most 128 characters, no '/' or '\\'")
    return name


def safe_label(text: str, fallback: str) -> str:
    """A label made file-safe: every other character becomes '_' (e.g. an adapter's folder
    name used for samples/LABEL/).
    """
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]", "_", text).lstrip(".")[:128]
    return cleaned or fallback


def inside(root: Path, path: Path) -> Path:
    """`path`, after checking that it resolves (links followed) to a place under `root`."""
    real_root = root.resolve()
    real = path.resolve()
    if real != real_root and real_root not in real.parents:
        raise ConfigError(f"refusing to write {path}: it lies outside {root}")
    return path


def umask() -> int:
    """The process umask (read once: os.umask can only be read by setting it)."""
    global _umask
    with _UMASK_LOCK:
        if _umask is None:
            _umask = os.umask(0o022)
            os.umask(_umask)
        return _umask


def file_mode() -> int:
    """What open() would give a new file: 0o666 less the umask (mkstemp gives 0o600)."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """The mode new folders get: 0o777 under the process's umask."""
    return 0o777 & ~umask()


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on a folder (flock on its descriptor) for the block: two processes
    writing one shared file in it (export.json, a local MLflow store) take turns.
    """
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
