"""Write report folders atomically: every file goes to a temporary name and is renamed, and
report.json is renamed last, so a reader never sees a half report."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, DataError
from harness.report import SCHEMA_VERSION


def dumps(report: Mapping[str, Any]) -> str:
    return json.dumps(report, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_out_dir(out: Path) -> None:
    """Fail before any work if the output folder cannot be written."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    probe = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"--out {out}: no permission to write in {probe}")


def samples_lines(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records)


def write_report(out: Path, report: Mapping[str, Any],
                 render: Callable[[dict[str, Any]], str],
                 samples: Mapping[str, Mapping[str, list[dict[str, Any]]]],
                 extra: Mapping[str, bytes] | None = None) -> str:
    """Write samples, extras, report.md (rendered from the JSON as written) and report.json.

    samples: variant label -> task -> records. One variant: samples/TASK.jsonl; several:
    samples/LABEL/TASK.jsonl. Returns the Markdown.
    """
    text = dumps(report)
    markdown = render(json.loads(text))
    out.mkdir(parents=True, exist_ok=True)
    nested = len(samples) > 1
    for label, tasks in samples.items():
        for task, records in tasks.items():
            folder = out / "samples" / label if nested else out / "samples"
            atomic_write(folder / f"{task}.jsonl", samples_lines(records))
    for name, data in (extra or {}).items():
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, out / name)
    atomic_write(out / "report.md", markdown)
    atomic_write(out / "report.json", text)
    return markdown


def load_report(path: Path) -> dict[str, Any]:
    """Read a report.json (or a folder holding one) and check its schema version."""
    if path.is_dir():
        path = path / "report.json"
    if not path.exists():
        raise DataError(f"{path}: no such report")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a valid report.json ({err})") from None
    if not isinstance(report, dict) or "schema_version" not in report:
        raise DataError(f"{path}: not a harness report (no schema_version)")
    if report["schema_version"] != SCHEMA_VERSION:
        raise DataError(f"{path}: report schema_version {report['schema_version']} is not "
                        f"supported (this harness reads {SCHEMA_VERSION}); re-run it with this "
                        f"version")
    return report
