"""Per-example result store: SQLite (WAL), one row per (model, task, example).

Key: the model fingerprint (base weights or revision, tokenizer, adapter weights,
quantization, dtype), the task fingerprint (template, truncation, generation settings, task
version, context length: not the metrics) and the example's content hash. Results are never
shared across models. Metrics are recomputed from stored outputs, so adding a metric never
regenerates anything.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

SCHEMA_VERSION = 1
FILENAME = "results.sqlite"


def default_cache_dir() -> Path:
    env = os.environ.get("HARNESS_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "harness"


class Store:
    """Open (creating if needed) the store in `folder`. A corrupt file or one of another
    schema version is moved aside with a message on stderr, never silently reused."""

    def __init__(self, folder: Path, readonly: bool = False):
        self.path = folder / FILENAME
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cache folder {folder} cannot be created ({err}); "
                              f"give another with --cache-dir or HARNESS_CACHE") from None
        self.db = self._open()
        self.readonly = readonly

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.execute("PRAGMA busy_timeout = 60000")
        # Switching a new file to WAL takes an exclusive lock that the busy timeout does not
        # cover: two runs opening a fresh store at once retry here.
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

    def _open(self) -> sqlite3.Connection:
        problem = None
        if self.path.exists():
            try:
                db = self._connect()
                ok = db.execute("PRAGMA quick_check").fetchone()[0]
                if ok != "ok":
                    problem = f"failed its integrity check ({ok})"
                else:
                    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'"
                                     ).fetchone() if _has_table(db, "meta") else None
                    if row is None or int(row[0]) != SCHEMA_VERSION:
                        problem = (f"has schema version {row[0] if row else 'unknown'}, this "
                                   f"harness writes {SCHEMA_VERSION}")
                if problem is None:
                    return db
                db.close()
            except sqlite3.DatabaseError as err:
                problem = f"is not a readable SQLite database ({err})"
            aside = self.path.with_name(f"{FILENAME}.bad-{int(time.time())}")
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.path) + suffix)
                if src.exists():
                    src.rename(Path(str(aside) + suffix))
            print(f"warning: result store {self.path} {problem}; moved it to {aside} and "
                  f"started a new one", file=sys.stderr)
        db = self._connect()
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                   (str(SCHEMA_VERSION),))
        db.execute("""CREATE TABLE IF NOT EXISTS results (
                        model_fp TEXT NOT NULL, task_fp TEXT NOT NULL,
                        example_hash TEXT NOT NULL, task TEXT NOT NULL, record TEXT NOT NULL,
                        created REAL NOT NULL,
                        PRIMARY KEY (model_fp, task_fp, example_hash))""")
        return db

    def get(self, model_fp: str, task_fp: str, hashes: Sequence[str]) -> dict[str, dict]:
        """Stored records for these examples (by example hash)."""
        found: dict[str, dict] = {}
        wanted = list(dict.fromkeys(hashes))
        for i in range(0, len(wanted), 500):
            part = wanted[i: i + 500]
            rows = self.db.execute(
                f"SELECT example_hash, record FROM results WHERE model_fp = ? AND task_fp = ? "
                f"AND example_hash IN ({','.join('?' * len(part))})",
                (model_fp, task_fp, *part)).fetchall()
            found.update({h: json.loads(r) for h, r in rows})
        return found

    def put(self, model_fp: str, task_fp: str, task: str,
            records: Iterable[dict[str, Any]]) -> None:
        """Write records (each with `example_hash`) in one transaction."""
        if self.readonly:
            return
        now = time.time()
        rows = [(model_fp, task_fp, r["example_hash"], task,
                 json.dumps(r, sort_keys=True, ensure_ascii=False), now) for r in records]
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)", rows)

    def info(self) -> dict[str, Any]:
        total = self.db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        groups = self.db.execute(
            "SELECT model_fp, task, COUNT(*), MAX(created) FROM results GROUP BY model_fp, task "
            "ORDER BY MAX(created) DESC").fetchall()
        size = sum(Path(str(self.path) + s).stat().st_size for s in ("", "-wal")
                   if Path(str(self.path) + s).exists())
        return {"path": str(self.path), "bytes": size, "results": total,
                "groups": [{"model": m, "task": t, "results": n,
                            "last_written": time.strftime("%Y-%m-%d %H:%M", time.gmtime(c))}
                           for m, t, n, c in groups]}

    def prune(self, older_than_days: float | None, model: str | None, task: str | None) -> int:
        clauses, args = [], []
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
        with self.db:
            n = self.db.execute(f"DELETE FROM results{where}", args).rowcount
        self.db.execute("VACUUM")
        return int(n)

    def close(self) -> None:
        self.db.close()


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                      (name,)).fetchone() is not None
