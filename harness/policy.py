"""Which code a task file may make the harness run.

A task's `transform: module:function` imports and calls Python code, and lm-eval's
`!function` tags in `--lm-eval-include` folders do the same. Task folders arrive in pull
requests, so by default only the harness's own transforms (`harness.transforms:*`) run.
Anything else needs an opt-in: `--allow-code` on the command line, or an allow-list in the
user's config file (`allow_code: [my_pkg.transforms]`, or `allow_code: true` for all), which
lives outside any repository a pull request can change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import env as harness_env
from harness.errors import ConfigError

BUILTIN_MODULE = "harness.transforms"
CONFIG_KEYS = ("allow_code",)
_FUNCTION_TAG = re.compile(rb"!function\b")


def config_path() -> Path:
    """$HARNESS_CONFIG, else $XDG_CONFIG_HOME/harness/config.yaml (~/.config by default)."""
    env = harness_env.text("HARNESS_CONFIG") or None
    if env:
        return Path(env).expanduser()
    base = harness_env.text("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "harness" / "config.yaml"


@dataclass(frozen=True)
class CodePolicy:
    """allow_any: every transform and lm-eval `!function` may run (--allow-code).
    modules: module names (and their submodules) whose transforms may run.
    """

    allow_any: bool = False
    modules: tuple[str, ...] = ()
    source: str = "default"  # where the permission came from, for messages

    def permits(self, module: str) -> bool:
        """Whether code from this module may run."""
        return module == BUILTIN_MODULE or self.allow_any or any(
            module == m or module.startswith(m + ".") for m in self.modules)

    def check_transform(self, spec: str, task: str, where: str) -> None:
        """Raise ConfigError when a task's transform names a module the policy does not permit."""
        module = spec.partition(":")[0]
        if not self.permits(module):
            raise ConfigError(
                f"task '{task}' ({where}) names transform '{spec}', which is code from outside "
                f"harness; it runs only with --allow-code or with '{module}' in allow_code in "
                f"{config_path()}")

    def check_lm_eval_include(self, folders: list[Path]) -> None:
        """lm-eval task YAMLs with `!function` import Python files: code, like transforms."""
        if self.allow_any:
            return
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*.y*ml")):
                try:
                    text = path.read_bytes()
                except OSError:
                    continue
                if _FUNCTION_TAG.search(text):
                    raise ConfigError(
                        f"--lm-eval-include {folder}: {path.name} uses lm-eval's !function, "
                        f"which runs Python code from that folder; add --allow-code if you "
                        f"trust it (or allow_code: true in {config_path()})")


DEFAULT_POLICY = CodePolicy()  # only harness.transforms


def load_policy(allow_code_flag: bool) -> CodePolicy:
    """The policy from --allow-code and the user's config file (validated here)."""
    if allow_code_flag:
        return CodePolicy(allow_any=True, source="--allow-code")
    path = config_path()
    if not path.exists():
        return CodePolicy()
    from harness import yamlio

    raw = yamlio.load_file(path, "harness config")
    if raw is None:
        return CodePolicy()
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the harness config must be a mapping (e.g. allow_code: "
                          f"[my_pkg.transforms])")
    unknown = sorted(str(k) for k in raw if k not in CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key '{unknown[0]}' (allowed: "
                          f"{', '.join(CONFIG_KEYS)})")
    value: Any = raw.get("allow_code", [])
    if value is True:
        return CodePolicy(allow_any=True, source=str(path))
    if value is False or value is None:
        return CodePolicy()
    if not isinstance(value, list) or not all(
            isinstance(m, str) and re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", m)
            for m in value):
        raise ConfigError(f"{path}: 'allow_code' must be true, false or a list of module "
                          f"names (e.g. [my_pkg.transforms]), got {value!r}")
    return CodePolicy(modules=tuple(value), source=str(path))
