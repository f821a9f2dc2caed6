"""Write report folders so that a reader never sees a half report, and read them back strictly.

A report (report.json, report.md, samples/, plots) is written whole into a staging folder
inside `--out`, then moved into place entry by entry with report.json last. A failure while
staging (a full disk, a kill) leaves the previous report as it was; the staging folder is
removed, or, after a kill, removed by the next write. Entries of a previous report in the same
folder that the new one does not have (an earlier run's samples) are removed, so a folder
never mixes two runs. Files get the user's umask (0644 under the usual 022), not mkstemp's
0600. Every path is checked to resolve inside `--out`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

from harness.errors import ConfigError, DataError
from harness.paths import dir_mode, file_mode, inside
from harness.report import READABLE_VERSIONS
from harness.shapes import ComparisonReport, Record, Report, RunReport

R = TypeVar("R", RunReport, ComparisonReport)

STAGING_PREFIX = ".harness-staging-"
# Top-level entries of a report folder and of a leaderboard folder: a new one replaces these
# (a previous run's samples included), and nothing else in the folder is touched.
REPORT_FILES = ("report.json", "report.md", "report.html", "samples", "deltas.png",
                "runs.json")
LEADERBOARD_FILES = ("leaderboard.md", "leaderboard.json", "leaderboard.csv", "leaderboard.html")


def finite(value: Any) -> Any:
    """A copy with every NaN or infinity replaced by None (report.json is strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(report: Mapping[str, object]) -> str:
    """report.json's bytes: sorted keys, non-finite numbers as null."""
    return json.dumps(finite(report), sort_keys=True, indent=2, ensure_ascii=False,
                      allow_nan=False) + "\n"


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, file_mode())


def atomic_write(path: Path, text: str | bytes) -> None:
    """One file: written to a temporary name beside it, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        _write_bytes(Path(tmp), text.encode("utf-8") if isinstance(text, str) else text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def prepare_out(out: Path) -> list[Path]:
    """Make sure --out can be written before any work: create it (and its parents) now.
    Returns the folders created, so a failed command can remove them again if empty.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    missing = [p for p in [out, *out.parents] if not p.exists()][::-1]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {out} cannot be created ({err.strerror or err}); give a "
                          f"folder you can write to") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: no permission to write in it")
    try:  # a folder that exists but cannot take a file (read-only mount, /proc) fails here
        fd, probe = tempfile.mkstemp(dir=out, prefix=f"{STAGING_PREFIX}{os.getpid()}-",
                                     suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        remove_if_empty(missing)
        raise ConfigError(f"--out {out} cannot be written ({err.strerror or err}); give a "
                          f"folder you can write to") from None
    return missing


def remove_if_empty(created: Iterable[Path]) -> None:
    """Remove folders this command created, deepest first, where they are still empty."""
    for folder in sorted(created, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_stale_staging(out: Path) -> None:
    """Staging folders and files left by a killed run (their process is gone); a live
    process's stay.
    """
    for stale in out.glob(STAGING_PREFIX + "*"):
        pid = stale.name[len(STAGING_PREFIX):].split("-")[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def write_folder(out: Path, files: Mapping[str, str | bytes],
                 replaces: Iterable[str] = REPORT_FILES) -> None:
    """Write `files` (path relative to out -> content) as one unit: staged, then moved in.
    Entries named in `replaces` that the new set lacks are removed (a previous run's).
    """
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out)
    stage = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out))
    try:
        os.chmod(stage, dir_mode())
        tops: list[str] = []
        for rel, content in files.items():
            target = inside(stage, stage / rel)
            top = Path(rel).parts[0]
            if top not in tops:
                tops.append(top)
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_bytes(target, content.encode("utf-8") if isinstance(content, str)
                         else content)
        trash = stage / ".previous"
        trash.mkdir()
        # report.json goes first out and last in: a reader sees no report or the whole new one.
        old = sorted({*replaces, *tops} & {p.name for p in out.iterdir()},
                     key=lambda n: n != "report.json")
        for name in old:
            os.replace(inside(out, out / name), trash / name)
        for name in sorted(tops, key=lambda n: n == "report.json"):
            os.replace(stage / name, inside(out, out / name))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def samples_lines(records: list[Record]) -> str:
    """Records as JSON lines (samples/TASK.jsonl)."""
    return "".join(json.dumps(finite(r), sort_keys=True, ensure_ascii=False, allow_nan=False)
                   + "\n" for r in records)


def write_report(out: Path, report: R,
                 render: Callable[[R], str],
                 samples: Mapping[str, Mapping[str, list[Record]]],
                 extra: Mapping[str, bytes] | None = None) -> str:
    """Write samples, extras, report.md (rendered from the JSON as written) and report.json.

    samples: variant label -> task -> records. One variant: samples/TASK.jsonl; several:
    samples/LABEL/TASK.jsonl. Returns the Markdown.
    """
    from harness.report.html import render_html

    text = dumps(report)
    markdown = render(cast(R, json.loads(text)))  # the report as written, read back
    nested = len(samples) > 1
    files: dict[str, str | bytes] = {}
    for label, tasks in samples.items():
        for task, records in tasks.items():
            rel = f"samples/{label}/{task}.jsonl" if nested else f"samples/{task}.jsonl"
            files[rel] = samples_lines(records)
    files.update(extra or {})
    files["report.html"] = render_html(cast(R, json.loads(text)), samples)
    files["report.md"] = markdown
    files["report.json"] = text
    write_folder(out, files)
    return markdown


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in strict JSON")


def strict_loads(text: str) -> Any:
    """json.loads that refuses NaN and Infinity (ValueError), as report files never hold them."""
    return json.loads(text, parse_constant=_reject_constant)


def read_json(path: Path, what: str) -> Any:
    """A strict JSON file (no NaN or Infinity), with one-line errors naming it."""
    try:
        text = path.read_bytes().decode("utf-8")
        return strict_loads(text)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid UTF-8; is it a {what}?") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not a valid {what} (line {err.lineno}: {err.msg})") from None
    except ValueError as err:
        raise DataError(f"{path}: not a valid {what} ({err})") from None
    except RecursionError:
        raise DataError(f"{path}: not a valid {what} (nested too deeply)") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not a {what}") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read it ({err.strerror or err})") from None


def load_report(path: Path) -> Report:
    """Read a report.json (or a folder holding one), check its schema version and shape."""
    from harness.report.schema import check_report

    if path.is_dir():
        path = path / "report.json"
    if not path.exists():
        raise DataError(f"{path}: no such report")
    report = read_json(path, "report.json")
    if not isinstance(report, dict) or "schema_version" not in report:
        raise DataError(f"{path}: not a harness report (no schema_version)")
    if report["schema_version"] not in READABLE_VERSIONS:
        raise DataError(f"{path}: report schema_version {report['schema_version']!r} is not "
                        f"supported (this harness reads "
                        f"{', '.join(map(str, READABLE_VERSIONS))}); re-run it with this "
                        f"version")
    check_report(report, str(path))
    return cast(Report, report)  # checked: the keys its readers use are there
