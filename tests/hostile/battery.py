"""The machinery of the hostile-input battery: each case runs `python -m harness` in a
subprocess inside a sandbox folder of its own, and is checked the same way:

- the exit code (2 for bad input unless the case says otherwise);
- stderr holds exactly one non-empty line, starting "error:" (or "interrupted:"), matching the
  case's pattern, and no traceback;
- nothing half-written: a failed command leaves --out absent, empty, or exactly as it was;
- no file outside --out: every file of the sandbox except the harness's own cache folder and
  the temporary folder is byte for byte as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IGNORED = ("cache", "tmp")  # the harness's result store folder, and TMPDIR for libraries


@dataclass
class Box:
    """One case's sandbox: work/ (cwd and inputs), out/ (--out), home/, cache/, tmp/."""

    root: Path

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def make(self) -> Box:
        for d in (self.work, self.home, self.cache, self.root / "tmp"):
            d.mkdir(parents=True, exist_ok=True)
        return self

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("HARNESS_", "XDG_", "WORLD_SIZE", "RANK", "LOCAL_RANK"))}
        env.update(HOME=str(self.home), HARNESS_CACHE=str(self.cache),
                   XDG_CONFIG_HOME=str(self.home / ".config"),
                   XDG_CACHE_HOME=str(self.root / "tmp" / "xdg-cache"),
                   TMPDIR=str(self.root / "tmp"), MPLCONFIGDIR=str(self.root / "tmp" / "mpl"),
                   HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HARNESS_NO_PROGRESS="1",
                   TOKENIZERS_PARALLELISM="false", PYTHONDONTWRITEBYTECODE="1")
        env.update(extra)
        return env


def snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, str]:
    """relative path -> content digest (or 'dir') of everything under root but `skip`."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for d in dirnames:
            found[str((here / d).relative_to(root)) + "/"] = "dir"
        for f in filenames:
            p = here / f
            if p.is_symlink():
                found[str(p.relative_to(root))] = "link:" + os.readlink(p)
                continue
            try:
                found[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
            except OSError:
                found[str(p.relative_to(root))] = "unreadable"
    return found


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return [x for x in self.stderr.splitlines() if x.strip()]


@dataclass(frozen=True)
class Case:
    """build(box, res) writes the case's inputs into box and returns harness's arguments."""

    id: str
    group: str
    build: Callable[[Box, Any], list[str]]
    pattern: str
    code: int = 2
    env: dict[str, str] = field(default_factory=dict)
    fsize: int | None = None            # RLIMIT_FSIZE in bytes (a full disk)
    interrupt: int | None = None        # a signal sent once the run has stored a result
    check: Callable[[Box, Result, Any], None] | None = None
    out_may_change: bool = False        # a case that succeeds and writes its report


def run_harness(box: Box, argv: list[str], env: dict[str, str], fsize: int | None = None,
                interrupt: int | None = None, timeout: float = 300) -> Result:
    def limits() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        # As from a terminal: a background job of a non-interactive shell (how CI may start
        # the suite) has SIGINT ignored, and the child would inherit that.
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "harness", *argv], cwd=box.work,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, preexec_fn=limits, text=True,
                            errors="backslashreplace")
    if interrupt is not None:
        wait_for_stored(box.cache / "results.sqlite", proc, 1, timeout)
        proc.send_signal(interrupt)
    out, err = proc.communicate(timeout=timeout)
    return Result(proc.returncode, out, err, time.perf_counter() - start)


def stored(path: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return int(db.execute("SELECT COUNT(*) FROM results").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def wait_for_stored(path: Path, proc: subprocess.Popen[str], n: int, timeout: float) -> None:
    """Wait until the store holds n results (the run is past loading, mid-work)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before it stored "
                                 f"{n} results: {proc.stderr.read() if proc.stderr else ''}")
        if path.exists() and stored(path) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {n} stored results within {timeout} s")


def run_case(case: Case, box: Box, res: Any) -> tuple[Result, list[str]]:
    """Run one case; returns its result and the list of rules it broke (empty: it held)."""
    box.make()
    argv = case.build(box, res)
    skip = tuple(box.root / d for d in IGNORED) + (box.out,)
    before = snapshot(box.root, skip)
    out_before = snapshot(box.out, ()) if box.out.exists() else None
    result = run_harness(box, argv, box.env(case.env), case.fsize, case.interrupt)
    broken: list[str] = []
    if result.code != case.code:
        broken.append(f"exit code {result.code}, expected {case.code}")
    if "Traceback" in result.stderr:
        broken.append("a traceback on stderr")
    if case.code != 0:
        if len(result.lines) != 1:
            broken.append(f"{len(result.lines)} stderr lines, expected 1")
        first = result.lines[0] if result.lines else ""
        lead = "interrupted:" if case.interrupt is not None else "error:"
        if not first.startswith(lead):
            broken.append(f"the stderr line does not start with '{lead}'")
        if not re.search(case.pattern, first):
            broken.append(f"the stderr line does not match {case.pattern!r}")
        if not case.out_may_change:
            now = snapshot(box.out, ()) if box.out.exists() else None
            if now != out_before and not (out_before is None and now == {}):
                broken.append(f"--out changed: {sorted(set(now or {}) ^ set(out_before or {}))}")
    elif case.pattern and not re.search(case.pattern, result.stderr + result.stdout):
        broken.append(f"stderr does not match {case.pattern!r}")
    after = snapshot(box.root, skip)
    if after != before:
        changed = sorted(k for k in set(after) | set(before) if after.get(k) != before.get(k))
        broken.append(f"files outside --out changed: {changed[:5]}")
    if case.check is not None:
        try:
            case.check(box, result, res)
        except AssertionError as err:
            broken.append(f"check: {err}")
    return result, broken


def interrupt_signal(name: str) -> int:
    return int(getattr(signal, name))


def recipe_text(base: Path, name: str = "tiny", extra: str = "") -> str:
    return (f"name: {name}\nbase: {base}\ntask: cnn_dailymail\n"
            "train: {split: train}\neval: {split: validation}\nquantization: none\n"
            "lora: {r: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, v_proj]}\n"
            "training: {max_steps: 2, micro_batch_size: 2, learning_rate: 0.001, "
            "eval_every: 1, save_every: 1, log_every: 1, max_length: 256, "
            "optimizer: adamw_torch, precision: fp32}\n" + extra)


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
