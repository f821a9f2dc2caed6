"""The one stderr line for each way a command can fail: errors a user can fix (exit 2),
interrupts (130), and bugs (exit 3, the traceback saved to a file and named).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import traceback

from harness.errors import HarnessError

_DISK_FULL = (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC))


def one_line(text: str) -> str:
    """The text on one line: newlines and runs of spaces folded."""
    return " ".join(str(text).split())


def interrupted(command: str) -> str:
    """The line for Ctrl-C: what was kept and how to resume."""
    if command == "train":
        return ("interrupted: the last checkpoint is kept; add --resume to the same command to "
                "continue from it")
    return ("interrupted: finished examples are kept in the result store and no report was "
            "written; run the same command again to resume")


def os_error(err: OSError) -> str:
    """The line for an operating-system error (a full disk, a missing permission)."""
    where = err.filename or "a file"
    if err.errno in _DISK_FULL:
        return (f"no space left writing {where} ({err.strerror}); nothing half-written was "
                f"kept: free disk space and run the same command again")
    return f"{where}: {err.strerror or err}"


def bug_line(err: BaseException) -> str:
    """Save the traceback to a file in the cache folder and say where it is."""
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    try:
        from harness.store import default_cache_dir

        folder = default_cache_dir() / "crashes"
        folder.mkdir(parents=True, exist_ok=True)
        import tempfile

        fd, path = tempfile.mkstemp(prefix="crash-", suffix=".txt", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        saved = f"the traceback is in {path}"
    except OSError:
        saved = "set HARNESS_DEBUG=1 to see the traceback"
    return (f"this is a bug in harness ({type(err).__name__}: {one_line(str(err))[:200]}); "
            f"{saved}; please report it")


def line_for(err: Exception) -> str | None:
    """The one stderr line for an error a user can act on; None for a bug."""
    if isinstance(err, HarnessError):
        return one_line(str(err))
    if isinstance(err, OSError):
        return one_line(os_error(err))
    if isinstance(err, sqlite3.Error):
        return (f"result store: {one_line(str(err))}; remove it, give another --cache-dir, or "
                f"run with --no-cache")
    if isinstance(err, UnicodeError):
        return (f"text that is not valid UTF-8 or Unicode ({one_line(str(err))[:200]}); fix "
                f"the file it came from")
    if isinstance(err, RecursionError):
        return "an input is nested too deeply to read; simplify it"
    if isinstance(err, MemoryError):
        return "out of memory; lower --batch-size or --limit"
    return None
