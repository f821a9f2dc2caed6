"""Task registry: YAML files checked once and turned into frozen TaskSpecs."""

from __future__ import annotations

import difflib
import importlib.resources
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import fields as dc_fields
from pathlib import Path
from typing import Any, TypeVar

from harness import yamlio
from harness.errors import ConfigError, NotFoundError
from harness.metrics.families import families_for
from harness.paths import check_name
from harness.prompts import placeholders
from harness.specs import DatasetSpec, GenerationSpec, TaskSpec

T = TypeVar("T")

def _kind_names() -> tuple[str, ...]:
    """The task kinds (harness.kinds.KINDS), imported when a task file is checked."""
    from harness.kinds import KINDS

    return tuple(KINDS)
_CHAT = ("never", "auto", "always")
_TASK_KEYS = {f.name for f in dc_fields(TaskSpec)} - {"source"}
_REQUIRED = {"name", "kind", "dataset", "fields", "prompt", "target"}
_DATASET_KEYS = {f.name for f in dc_fields(DatasetSpec)}
_GEN_KEYS = {f.name for f in dc_fields(GenerationSpec)}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Scanned left to right as prompts.render does: {{, }}, {anything without braces}, or a lone
# brace (None group).
_BRACES = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def _unknown(keys: Iterable[str], allowed: set[str], where: str) -> list[str]:
    return [
        f"unknown key '{where}{k}' (allowed: {', '.join(sorted(allowed))})"
        for k in sorted(set(keys) - allowed)
    ]


def _check_type(raw: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str,
                problems: list[str], where: str = "") -> None:
    if key in raw and raw[key] is not None and not isinstance(raw[key], kind):
        problems.append(f"'{where}{key}' must be {what}, got {type(raw[key]).__name__}")


def _generation_problems(gen: Mapping[str, Any]) -> list[str]:
    """Types and ranges of the `generation:` section (bool is not accepted as a number)."""
    problems = _unknown(gen.keys(), _GEN_KEYS, "generation.")

    def number(key: str) -> bool:
        v = gen.get(key)
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    mnt = gen.get("max_new_tokens")
    if "max_new_tokens" in gen and (not isinstance(mnt, int) or isinstance(mnt, bool)
                                    or mnt < 1):
        problems.append(f"'generation.max_new_tokens' must be a positive integer, got {mnt!r}")
    if "temperature" in gen and (not number("temperature") or gen["temperature"] < 0):
        problems.append(f"'generation.temperature' must be a number >= 0, "
                        f"got {gen['temperature']!r}")
    if "top_p" in gen and (not number("top_p") or not 0 < gen["top_p"] <= 1):
        problems.append(f"'generation.top_p' must be a number in (0, 1], got {gen['top_p']!r}")
    if "do_sample" in gen and not isinstance(gen["do_sample"], bool):
        problems.append(f"'generation.do_sample' must be true or false, "
                        f"got {gen['do_sample']!r}")
    seed = gen.get("seed")
    if "seed" in gen and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        problems.append(f"'generation.seed' must be an integer >= 0, got {seed!r}")
    stop = gen.get("stop")
    if "stop" in gen and (not isinstance(stop, list) or not all(
            isinstance(s, str) and s for s in stop)):
        problems.append(f"'generation.stop' must be a list of non-empty strings "
                        f"(e.g. stop: [\"\\n\\n\"]), got {stop!r}")
    return problems


def _template_problems(key: str, template: str, known: set[str]) -> list[str]:
    """Every {…} in a template must be a {field} of 'fields'; {{ and }} are literal braces."""
    problems = []
    for m in _BRACES.finditer(template):
        token = m.group(0)
        if token in ("{{", "}}"):
            continue
        name = m.group(1)
        if name is None or not _IDENT.fullmatch(name):
            problems.append(f"'{key}' has {token!r}, which is not a {{field}} placeholder "
                            f"(write {{{{ and }}}} for literal braces)")
        elif name not in known:
            problems.append(f"'{key}' uses {{{name}}}, which is not in 'fields' "
                            f"(fields: {', '.join(sorted(known))})")
    return problems


def parse_task(raw: Any, source: str) -> TaskSpec:
    """Validate one task mapping; raise ConfigError listing every problem with the file name."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a task file must hold a mapping of keys, "
                          f"got {type(raw).__name__}")
    problems = _unknown([str(k) for k in raw], _TASK_KEYS, "")
    problems += [f"missing required key '{k}'" for k in sorted(_REQUIRED - raw.keys())]
    for key in ("name", "prompt", "target", "description", "chat_prompt", "truncate", "choices",
                "target_delimiter", "transform", "id_field"):
        _check_type(raw, key, str, "a string", problems)
    if isinstance(raw.get("name"), str):
        try:
            check_name(raw["name"], "task name")
        except ConfigError as err:
            problems.append(str(err))
    version = raw.get("version")
    if "version" in raw and (not isinstance(version, int) or isinstance(version, bool)
                             or version < 0):
        problems.append(f"'version' must be an integer >= 0, got {version!r}")
    kinds = _kind_names()
    if raw.get("kind") is not None and raw.get("kind") not in kinds:
        problems.append(f"'kind' must be one of {', '.join(kinds)}, got {raw.get('kind')!r}")
    if raw.get("chat_template", "never") not in _CHAT:
        problems.append(f"'chat_template' must be one of {', '.join(_CHAT)}, "
                        f"got {raw.get('chat_template')!r}")

    dataset = raw.get("dataset")
    if "dataset" in raw:
        if not isinstance(dataset, dict):
            problems.append("'dataset' must be a mapping with 'hub' and 'split'")
            dataset = {}
        else:
            problems += _unknown([str(k) for k in dataset], _DATASET_KEYS, "dataset.")
            problems += ["missing required key 'dataset.split'"] if "split" not in dataset \
                else []
            for key in _DATASET_KEYS:
                _check_type(dataset, key, str, "a string", problems, "dataset.")
            if dataset.get("hub") and dataset.get("file"):
                problems.append("'dataset' takes 'hub' or 'file', not both")
    fmap = raw.get("fields")
    if "fields" in raw and (not isinstance(fmap, dict) or not fmap
                            or not all(isinstance(k, str) and isinstance(v, str) and v
                                       for k, v in fmap.items())):
        problems.append("'fields' must be a non-empty mapping of task field -> column name")
        fmap = None
    elif isinstance(fmap, dict):
        problems += [f"field name '{k}' must be a letter or _ followed by letters, digits "
                     f"or _" for k in fmap if not _IDENT.fullmatch(k)]
    gen = raw.get("generation") or {}
    if not isinstance(gen, dict):
        problems.append("'generation' must be a mapping")
        gen = {}
    problems += _generation_problems(gen)
    metrics = raw.get("metrics", [])
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        problems.append("'metrics' must be a list of metric names")
        metrics = []
    elif len(set(metrics)) != len(metrics):
        problems.append("'metrics' names a metric twice")

    kind = raw.get("kind")
    if isinstance(fmap, dict) and kind in kinds:
        known = set(fmap)
        for key in ("prompt", "chat_prompt"):
            if isinstance(raw.get(key), str):
                problems += _template_problems(key, raw[key], known)
        for key in ("target", "truncate", "choices", "id_field"):
            if isinstance(raw.get(key), str) and raw[key] not in known:
                problems.append(f"'{key}' names field '{raw[key]}', which is not in 'fields' "
                                f"(fields: {', '.join(sorted(known))})")
        if isinstance(raw.get("truncate"), str) and isinstance(raw.get("prompt"), str) \
                and raw["truncate"] not in placeholders(raw["prompt"]):
            problems.append(f"'truncate' names '{raw['truncate']}', which the prompt does not use")
        if kind == "multiple_choice" and not raw.get("choices"):
            problems.append("a multiple_choice task needs 'choices' (the field with the list)")
        if kind != "multiple_choice" and raw.get("choices"):
            problems.append(f"'choices' is only for multiple_choice tasks, not {kind}")
        allowed = families_for(kind)
        for m in metrics:
            if m not in allowed:
                close = difflib.get_close_matches(m, sorted(allowed), n=2)
                hint = f" Did you mean: {', '.join(close)}?" if close else ""
                problems.append(f"metric '{m}' is not available for {kind} tasks.{hint} "
                                f"Known: {', '.join(sorted(allowed))}")
        if not metrics:
            problems.append(f"'metrics' is empty (known for {kind}: {', '.join(sorted(allowed))})")
    transform = raw.get("transform")
    if isinstance(transform, str) and not re.fullmatch(r"[\w.]+:\w+", transform):
        problems.append(f"'transform' must look like 'module.path:function', got {transform!r}")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    # Checked above: each problem would have been reported.
    assert isinstance(dataset, dict) and isinstance(fmap, dict) and isinstance(gen, dict)
    assert kind in ("generation", "multiple_choice", "perplexity")  # specs.TaskSpec.kind

    gen_spec = GenerationSpec(**{**gen, "stop": tuple(gen.get("stop", ()))})
    if dataset.get("file"):  # relative to the YAML file
        dataset = {**dataset, "file": str(Path(source).parent / dataset["file"])}
    return TaskSpec(
        name=raw["name"], kind=kind, dataset=DatasetSpec(**dataset),
        fields=tuple(fmap.items()), prompt=raw["prompt"], target=raw["target"],
        version=raw.get("version", 1), description=raw.get("description", ""),
        chat_template=raw.get("chat_template", "never"), chat_prompt=raw.get("chat_prompt"),
        truncate=raw.get("truncate"), choices=raw.get("choices"),
        target_delimiter=raw.get("target_delimiter", " "), transform=transform,
        id_field=raw.get("id_field"), generation=gen_spec, metrics=tuple(metrics),
        source=source,
    )


def load_task(path: Path) -> TaskSpec:
    """Read and validate one task YAML (safe constructors, duplicate keys refused)."""
    return parse_task(yamlio.load_file(path, "task file"), str(path))


def _builtin_files() -> list[Path]:
    """The shipped task YAMLs (harness/tasks/, package data of harness.tasks)."""
    root = Path(str(importlib.resources.files("harness.tasks")))
    return sorted(root.glob("*.yaml"))


def discover_tasks(extra_dirs: Iterable[Path] = ()) -> dict[str, TaskSpec]:
    """Built-in tasks plus every *.yaml under each --tasks-dir; a name defined twice is an error."""
    files = _builtin_files()
    for d in extra_dirs:
        if not d.is_dir():
            raise NotFoundError(f"--tasks-dir {d} is not a folder")
        files += sorted(d.rglob("*.yaml")) + sorted(d.rglob("*.yml"))
    found: dict[str, TaskSpec] = {}
    errors: list[str] = []
    for path in files:
        try:
            spec = load_task(path)
        except ConfigError as err:
            errors.append(str(err))
            continue
        if spec.name in found:
            errors.append(f"task '{spec.name}' is defined twice: {found[spec.name].source} "
                          f"and {path}")
            continue
        found[spec.name] = spec
    if errors:
        raise ConfigError(" | ".join(errors))
    return found


def pick(registry: Mapping[str, T], name: str, what: str) -> T:
    """Look a name up, or fail with the closest known names."""
    if name in registry:
        return registry[name]
    close = difflib.get_close_matches(name, list(registry), n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise NotFoundError(f"unknown {what} '{name}'.{hint} Known: {', '.join(sorted(registry))}")
