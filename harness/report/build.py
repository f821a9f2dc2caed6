"""Assemble report.json dictionaries."""

from __future__ import annotations

import importlib.metadata as md
import platform
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from harness import __version__
from harness.errors import ConfigError
from harness.report import SCHEMA_VERSION
from harness.shapes import Report, RunEntry, RunReport

if TYPE_CHECKING:
    from harness.models import LoadedModel
    from harness.specs import RunSpec

LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "datasets",
             "tokenizers", "lm-eval", "rouge-score", "sacrebleu", "bert-score", "numpy")


def versions() -> dict[str, str | None]:
    """Python's, the harness's and each library's version (None where not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version(), "harness": __version__}
    for lib in LIBRARIES:
        try:
            out[lib] = md.version(lib)
        except md.PackageNotFoundError:
            out[lib] = None
    return out


def device_info(device: str, dtype: str) -> dict[str, Any]:
    """The device's type, name and dtype for report.json."""
    info: dict[str, Any] = {"type": device.split(":")[0], "dtype": dtype}
    if device.startswith("cuda"):
        import torch

        info["name"] = torch.cuda.get_device_name(torch.device(device))
        info["count"] = torch.cuda.device_count()
    else:
        info["name"] = platform.processor() or platform.machine()
    return info


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def run_report(runs: list[RunEntry], loaded: LoadedModel, spec: RunSpec,
               started: float) -> RunReport:
    """kind: run. One model: top-level label/model/tasks; several: a list under `runs`."""
    report: RunReport = {
        "schema_version": SCHEMA_VERSION,
        "kind": "run",
        "harness_version": __version__,
        "versions": versions(),
        "device": device_info(loaded.device, loaded.dtype),
        "settings": {"limit": spec.limit, "batch_size": spec.batch_size or "auto",
                     "max_new_tokens_override": spec.max_new_tokens,
                     "bootstrap_resamples": spec.bootstrap, "seed": spec.seed,
                     "max_length": loaded.max_length},
        "created_at": _iso(started),
        "timings": {"wall_seconds": round(time.time() - started, 3),
                    "load_seconds": round(loaded.load_seconds, 3)},
    }
    if len(runs) == 1:
        report.update(runs[0])
    else:
        report["runs"] = runs
    return report


def iter_runs(report: Report) -> Iterator[RunEntry]:
    """Each {label, model, tasks} entry of a run report, one-model or several."""
    if report["kind"] != "run":
        raise ConfigError(f"expected a run report, got kind '{report['kind']}'")
    if "runs" in report:
        yield from report["runs"]
    else:
        yield {"label": report["label"], "model": report["model"], "tasks": report["tasks"]}
