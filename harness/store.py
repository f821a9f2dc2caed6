"""Per-example result store: SQLite (WAL), one row per (model, task, example).

Key: the model fingerprint (base weights, config and generation config, or hub revision;
tokenizer; adapter weights; quantization; dtype), the task fingerprint (template, truncation,
generation settings, task version, context length, the harness's results version and the
engine options that change numerics: not the metrics) and the example's content hash. Results
are never shared across models. Metrics are recomputed from stored outputs, so adding a metric
never regenerates anything.

Several processes may share one store (CI jobs on one runner). Opening is serialised by an
exclusive lock on `results.sqlite.init-lock`, so a new file is created and given its schema by
one process while the others wait; every open store holds a shared lock on
`results.sqlite.use-lock` for its lifetime, and a damaged file is moved aside only by a process
that can take that lock exclusively, i.e. when nobody else has the store open.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, cast

from harness import env as harness_env
from harness.errors import ConfigError, HarnessError
from harness.shapes import LmEvalIndex, Record

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no cross-process locking
    fcntl = None  # type: ignore[assignment]

SCHEMA_VERSION = 1
FILENAME = "results.sqlite"


class StoreError(HarnessError):
    """The result store cannot be read or written (disk full, damaged while in use)."""


def default_cache_dir() -> Path:
    """The store's folder: HARNESS_CACHE, else XDG_CACHE_HOME/harness or ~/.cache/harness."""
    env = harness_env.text("HARNESS_CACHE") or None
    if env:
        return Path(env).expanduser()
    base = harness_env.text("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "harness"


def _lock(fh: IO[str], mode: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fh.fileno(), mode)
        return True
    except BlockingIOError:
        return False


class Store:
    """Open (creating if needed) the store in `folder`. A corrupt file or one of another
    schema version is moved aside with a message on stderr, never silently reused.
    readonly: neither create the folder nor the file, never write (cache info).
    """

    def __init__(self, folder: Path, readonly: bool = False):
        self.path = folder / FILENAME
        self.readonly = readonly
        self.db: sqlite3.Connection | None = None
        self._use: IO[str] | None = None
        if readonly and not self.path.exists():
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
            init = open(str(self.path) + ".init-lock", "a", encoding="utf-8")  # noqa: SIM115
            self._use = open(str(self.path) + ".use-lock", "a", encoding="utf-8")  # noqa: SIM115
        except OSError as err:
            raise ConfigError(f"result store folder {folder} cannot be used "
                              f"({err.strerror or err}); give another with --cache-dir or "
                              f"HARNESS_CACHE, or run with --no-cache") from None
        try:
            _lock(init, fcntl.LOCK_EX if fcntl else 0)
            self.db = self._open()
            _lock(self._use, fcntl.LOCK_SH if fcntl else 0)
        except sqlite3.Error as err:
            self.close()
            raise StoreError(f"result store {self.path} cannot be opened ({err}); remove it, "
                             f"give another --cache-dir, or run with --no-cache") from None
        except BaseException:
            self.close()
            raise
        finally:
            init.close()  # releases the init lock

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.execute("PRAGMA busy_timeout = 60000")
        # Switching a new file to WAL takes an exclusive lock that the busy timeout does not
        # cover: a reader of the same file retries here.
        for attempt in range(100):
            try:
                db.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError:
                if attempt == 99:
                    raise
                time.sleep(0.05)
        db.execute("PRAGMA synchronous = NORMAL")
        return db

    def _problem(self) -> str | None:
        """Why the existing file cannot be used, or None (also None for an empty file)."""
        try:
            db = self._connect()
        except sqlite3.DatabaseError as err:
            return f"is not a readable SQLite database ({err})"
        try:
            ok = db.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                return f"failed its integrity check ({ok})"
            tables = {r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                return None  # an empty file: set it up as new
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'"
                             ).fetchone() if "meta" in tables else None
            if row is None or str(row[0]) != str(SCHEMA_VERSION) or "results" not in tables:
                return (f"has schema version {row[0] if row else 'unknown'}, this harness "
                        f"writes {SCHEMA_VERSION}")
            return None
        except sqlite3.DatabaseError as err:
            return f"is not a readable SQLite database ({err})"
        finally:
            db.close()

    def _move_aside(self, problem: str) -> None:
        if self._use is not None and not _lock(self._use, fcntl.LOCK_EX | fcntl.LOCK_NB
                                               if fcntl else 0):
            raise StoreError(f"result store {self.path} {problem}, and another harness process "
                             f"has it open; let that one finish, or run with another "
                             f"--cache-dir or --no-cache")
        aside = self.path.with_name(f"{FILENAME}.bad-{int(time.time())}-{os.getpid()}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                src.rename(Path(str(aside) + suffix))
        print(f"warning: result store {self.path} {problem}; moved it to {aside} and started "
              f"a new one", file=sys.stderr)

    def _open(self) -> sqlite3.Connection:
        if self.path.exists():
            problem = self._problem()
            if problem is not None:
                if self.readonly:
                    raise StoreError(f"result store {self.path} {problem}")
                self._move_aside(problem)
        db = self._connect()
        if self.readonly:
            return db
        with db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                       (str(SCHEMA_VERSION),))
            db.execute("""CREATE TABLE IF NOT EXISTS results (
                            model_fp TEXT NOT NULL, task_fp TEXT NOT NULL,
                            example_hash TEXT NOT NULL, task TEXT NOT NULL, record TEXT NOT NULL,
                            created REAL NOT NULL,
                            PRIMARY KEY (model_fp, task_fp, example_hash))""")
        return db

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as err:
            hint = ("free disk space, or run with --no-cache" if "full" in str(err).lower()
                    or "disk" in str(err).lower() else
                    "remove the file, give another --cache-dir, or run with --no-cache")
            raise StoreError(f"result store {self.path}: cannot {doing} ({err}); results "
                             f"stored before are kept; {hint}") from None

    def get(self, model_fp: str, task_fp: str, hashes: Sequence[str],
            valid: Callable[[Record], bool] | None = None,
            task: str = "") -> dict[str, Record]:
        """Stored records for these examples (by example hash). A record that cannot be
        decoded, or that `valid` rejects, is left out (so it is computed again) and counted
        in one warning.
        """
        found: dict[str, Record] = {}
        if self.db is None:
            return found
        wanted = list(dict.fromkeys(hashes))
        bad = 0
        with self._errors("read it"):
            for i in range(0, len(wanted), 500):
                part = wanted[i: i + 500]
                rows = self.db.execute(
                    f"SELECT example_hash, record FROM results WHERE model_fp = ? AND "
                    f"task_fp = ? AND example_hash IN ({','.join('?' * len(part))})",
                    (model_fp, task_fp, *part)).fetchall()
                for h, text in rows:
                    try:
                        rec = json.loads(text)
                    except (ValueError, TypeError, RecursionError):
                        rec = None
                    if not isinstance(rec, dict) or rec.get("example_hash") != h or (
                            valid is not None and not valid(cast(Record, rec))):
                        bad += 1
                        continue
                    found[h] = cast(Record, rec)  # a stored row: the kind's check passed
        if bad:
            print(f"warning: result store {self.path}: {bad} stored result(s)"
                  f"{' of task ' + task if task else ''} could not be read; computing them "
                  f"again", file=sys.stderr)
        return found

    def get_index(self, model_fp: str, task_fp: str) -> LmEvalIndex | None:
        """An lm-eval task's index row, if stored and well formed (else None: run it)."""
        row: Mapping[str, object] = self.get(model_fp, task_fp, ["__index__"]).get(
            "__index__", {})
        hashes, ids = row.get("hashes"), row.get("ids")
        if not (isinstance(hashes, list) and isinstance(ids, list) and len(hashes) == len(ids)
                and isinstance(row.get("info"), dict)):
            return None
        return cast(LmEvalIndex, row)

    def put(self, model_fp: str, task_fp: str, task: str,
            records: Iterable[Record | LmEvalIndex]) -> None:
        """Write records (each with `example_hash`) in one transaction."""
        if self.readonly or self.db is None:
            return
        now = time.time()
        rows = [(model_fp, task_fp, r["example_hash"], task,
                 json.dumps(r, sort_keys=True, ensure_ascii=False), now) for r in records]
        with self._errors("write to it"), self.db:
            self.db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)", rows)

    def info(self) -> dict[str, Any]:
        """The store's path and size, its record count, and its (model, task) groups."""
        if self.db is None:
            return {"path": str(self.path), "bytes": 0, "results": 0, "groups": [],
                    "exists": False}
        with self._errors("read it"):
            total = self.db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            groups = self.db.execute(
                "SELECT model_fp, task, COUNT(*), MAX(created) FROM results "
                "GROUP BY model_fp, task ORDER BY MAX(created) DESC").fetchall()
        size = sum(Path(str(self.path) + s).stat().st_size for s in ("", "-wal")
                   if Path(str(self.path) + s).exists())
        return {"path": str(self.path), "bytes": size, "results": total, "exists": True,
                "groups": [{"model": m, "task": t, "results": n,
                            "last_written": time.strftime("%Y-%m-%d %H:%M", time.gmtime(c))}
                           for m, t, n, c in groups]}

    def prune(self, older_than_days: float | None, model: str | None, task: str | None) -> int:
        """Delete stored records by age, model or task; returns how many."""
        if self.db is None:
            return 0
        clauses: list[str] = []
        args: list[float | str] = []
        if older_than_days is not None:
            clauses.append("created < ?")
            args.append(time.time() - older_than_days * 86400)
        if model:
            clauses.append("model_fp = ?")
            args.append(model)
        if task:
            clauses.append("task = ?")
            args.append(task)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        with self._errors("prune it"):
            with self.db:
                n = self.db.execute(f"DELETE FROM results{where}", args).rowcount
            self.db.execute("VACUUM")
        return int(n)

    def close(self) -> None:
        """Close the database (idempotent)."""
        if self.db is not None:
            self.db.close()
            self.db = None
        if self._use is not None:
            self._use.close()  # releases the shared lock
            self._use = None
