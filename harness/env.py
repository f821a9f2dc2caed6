"""The environment variables the harness reads, checked in one place when a command starts.

A value that is set but not one the harness understands is an error naming the variable,
not a silent fallback. The engine's switches are turned into harness.options.EngineOptions
once per command; those that change computed numbers are part of the result-store key, so a
run with another numerical path never reuses answers. Other modules read the environment
through `get`, `positive` and `text` here, nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from harness.errors import ConfigError

CHOICES: dict[str, tuple[str, ...]] = {
    "HARNESS_FUSED": ("auto", "0", "1"),
    "HARNESS_CHOICES_ATTN": ("flash", "mask", "segments"),
    "HARNESS_FAST_DECODE": ("0", "1"),
    "HARNESS_CUDA_GRAPHS": ("0", "1"),
    "HARNESS_DECODE_ATTN": ("auto", "grouped", "sdpa"),
    "HARNESS_DEBUG": ("0", "1"),
}
POSITIVE = ("HARNESS_STORE_CHUNK", "HARNESS_METRIC_WORKERS")
PATHS = ("HARNESS_CACHE", "HARNESS_CONFIG", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")
# The engine's switches become harness.options.EngineOptions (documented there).
DEFAULTS = {"HARNESS_FUSED": "auto", "HARNESS_CHOICES_ATTN": "flash",
            "HARNESS_FAST_DECODE": "1", "HARNESS_DECODE_ATTN": "auto",
            "HARNESS_CUDA_GRAPHS": "1", "HARNESS_DEBUG": "0"}


def _int(name: str, value: str, minimum: int) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} must be an integer") from None
    if n < minimum:
        raise ConfigError(f"environment variable {name}={value!r} must be >= {minimum}")
    return n


def check(environ: Mapping[str, str] | None = None) -> None:
    """Raise ConfigError for the first harness variable set to a value it cannot use."""
    env = os.environ if environ is None else environ
    for name, allowed in CHOICES.items():
        value = env.get(name)
        if value is not None and value.strip() not in allowed:
            raise ConfigError(f"environment variable {name}={value!r} must be one of "
                              f"{', '.join(allowed)} (or unset)")
    for name in POSITIVE:
        if env.get(name) is not None:
            _int(name, env[name], 1)
    for name in PATHS:
        value = env.get(name)
        if value is not None and ("\0" in value or (value and not value.strip())):
            raise ConfigError(f"environment variable {name}={value!r} is not a usable path")
    world = _int("WORLD_SIZE", env["WORLD_SIZE"], 1) if env.get("WORLD_SIZE") else 1
    for name in ("RANK", "LOCAL_RANK"):
        if env.get(name):
            rank = _int(name, env[name], 0)
            if name == "RANK" and rank >= world:
                raise ConfigError(f"environment variable RANK={rank} must be below "
                                  f"WORLD_SIZE={world}")


def get(name: str) -> str:
    """A checked switch's value (its default when unset)."""
    value = os.environ.get(name)
    return value.strip() if value is not None else DEFAULTS.get(name, "")


def positive(name: str) -> int | None:
    """A HARNESS_* integer switch that must be 1 or more (None when unset)."""
    value = os.environ.get(name)
    return _int(name, value, 1) if value else None


def text(name: str) -> str:
    """Any other variable's value, stripped ("" when unset): the one place the harness reads
    the environment (its own HARNESS_* switches above, the launcher's RANK/WORLD_SIZE, the
    trackers' MLFLOW_*/WANDB_* settings).
    """
    return os.environ.get(name, "").strip()
