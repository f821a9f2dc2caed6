"""Rows for a task: a hub dataset by default, or a local jsonl/json/parquet/csv file."""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, DataError, HarnessError, NotFoundError, first_line
from harness.policy import DEFAULT_POLICY, CodePolicy
from harness.specs import TaskSpec

SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


@dataclass(frozen=True)
class Example:
    """One row after transform and field mapping: task field -> value."""

    id: str
    fields: dict[str, Any]
    hash: str  # sha256 of the canonical JSON of `fields`


@dataclass(frozen=True)
class TaskData:
    """The examples a task runs on, with where they came from."""

    source: str
    sha256: str  # over the example hashes, in order
    examples: tuple[Example, ...]


def canonical_json(value: Any) -> str:
    """Stable JSON for hashing: sorted keys, no spaces, Unicode kept."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      default=str)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # a BOM is fine
            except UnicodeDecodeError:
                raise DataError(f"{path}: line {lineno} is not valid UTF-8; "
                                "re-encode the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: line {lineno} is not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: line {lineno} must be a JSON object, "
                                f"got {type(row).__name__}")
            rows.append(row)
    return rows


def _read_json(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid UTF-8; re-encode the file as UTF-8") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path}: expected a list of objects (or {{\"data\": [...]}})")
    return data


def _read_table(path: Path) -> list[dict[str, Any]]:
    import pandas as pd

    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, encoding="utf-8", keep_default_na=False)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid UTF-8; re-encode the file as UTF-8") from None
    except Exception as err:  # pandas/pyarrow raise many types for unreadable files
        raise DataError(f"{path}: cannot read as {path.suffix[1:]} "
                        f"({first_line(err)})") from None
    rows = frame.to_dict(orient="records")
    # numpy arrays (parquet list columns) -> lists, so rows hash and serialise alike.
    return [{k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in r.items()} for r in rows]


def read_file(path: Path) -> list[dict[str, Any]]:
    """Raw rows of a local data file."""
    if not path.exists():
        raise NotFoundError(f"data file {path} does not exist")
    if path.is_dir():
        raise DataError(f"{path} is a folder; give a data file ({', '.join(SUFFIXES)})")
    if path.suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type '{path.suffix}' "
                        f"(use one of {', '.join(SUFFIXES)})")
    if path.suffix == ".jsonl":
        return _read_jsonl(path)
    if path.suffix == ".json":
        return _read_json(path)
    return _read_table(path)


def read_hub(task: TaskSpec, limit: int | None) -> list[dict[str, Any]]:
    """Raw rows from the hub through `datasets` (needs the hub or a warm cache)."""
    ds = task.dataset
    # A split that is already a slice ("train[90%:]") is cut after loading.
    split = ds.split if limit is None or "[" in ds.split else f"{ds.split}[:{limit}]"
    try:
        import datasets

        data = datasets.load_dataset(ds.hub, ds.config, split=split, revision=ds.revision)
    except Exception as err:
        raise DataError(f"task '{task.name}': cannot load hub dataset {ds.hub} "
                        f"({first_line(err)}); "
                        f"without the hub, point it at a local file: "
                        f"--data {task.name}=PATH.jsonl") from None
    return [dict(r) for r in data]


def load_transform(spec: str, policy: CodePolicy, task: str = "?",
                   where: str = "task file") -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The transform function, imported only if the code policy permits its module."""
    policy.check_transform(spec, task, where)
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"transform '{spec}' cannot be imported ({err})") from None
    if not callable(fn):
        raise ConfigError(f"transform '{spec}' is not a function")
    return fn


def _apply_transform(fn: Callable[[dict[str, Any]], dict[str, Any]], spec: str,
                     rows: list[dict[str, Any]], task: str, source: str,
                     ) -> list[dict[str, Any]]:
    out = []
    for i, row in enumerate(rows):
        try:
            new = fn(row)
        except HarnessError as err:
            raise DataError(f"task '{task}' ({source}), row {i}: {err}") from None
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
            raise DataError(f"task '{task}' ({source}), row {i}: transform '{spec}' failed "
                            f"({type(err).__name__}: {err}); check the row's columns and "
                            f"types") from None
        if not isinstance(new, dict):
            raise DataError(f"task '{task}': transform '{spec}' returned "
                            f"{type(new).__name__} for row {i}, not a mapping")
        out.append(new)
    return out


def _resolve_columns(task: TaskSpec, columns: list[str], source: str) -> dict[str, str]:
    """Task field -> actual column: exact name first, else the one column equal ignoring case."""
    resolved: dict[str, str] = {}
    missing: list[str] = []
    lowered: dict[str, list[str]] = {}
    for c in columns:
        lowered.setdefault(c.lower(), []).append(c)
    for task_field, column in task.fields:
        if column in columns:
            resolved[task_field] = column
        elif len(lowered.get(column.lower(), [])) == 1:
            resolved[task_field] = lowered[column.lower()][0]
        else:
            missing.append(column)
    if missing:
        raise DataError(f"task '{task.name}': {source} has no column "
                        f"{', '.join(repr(m) for m in missing)} (columns: {', '.join(columns)}); "
                        f"rename the column or map it in the task's 'fields'")
    return resolved


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unencodable(fields: dict[str, Any]) -> str | None:
    """The first field whose text (or list of texts) cannot be encoded as UTF-8."""
    for name, value in fields.items():
        texts = value if isinstance(value, list) else [value]
        for t in texts:
            if isinstance(t, str):
                try:
                    t.encode("utf-8")
                except UnicodeEncodeError:
                    return name
    return None


def _check_values(task: TaskSpec, examples: list[Example], source: str,
                  allow_empty_target: bool = False) -> None:
    text_fields = {n for n in (task.target, task.truncate) if n} if task.kind != \
        "multiple_choice" else set()
    from harness.prompts import placeholders

    text_fields |= set(placeholders(task.prompt))
    problems: list[str] = []
    for name in sorted(text_fields):
        bad = [e.id for e in examples if not isinstance(e.fields.get(name), str)]
        if bad:
            problems.append(f"field '{name}' is not text in {len(bad)} rows "
                            f"(first: {', '.join(bad[:3])})")
            continue
        empty = [e.id for e in examples if not e.fields[name].strip()]
        if empty and name == task.target and not allow_empty_target:
            problems.append(f"{len(empty)} rows have an empty reference '{name}' "
                            f"(first: {', '.join(empty[:3])}); drop them from the data")
    if task.kind == "multiple_choice":
        for e in examples:
            choices, label = e.fields.get(task.choices or ""), e.fields.get(task.target)
            if not isinstance(choices, list) or len(choices) < 2 \
                    or not all(isinstance(c, str) and c.strip() for c in choices):
                problems.append(f"row {e.id}: '{task.choices}' must be a list of 2+ non-empty "
                                f"strings, got {_short(choices)}")
                break
            if isinstance(label, str) and label.strip().lstrip("-").isdigit():
                label = int(label)
            if not isinstance(label, int) or isinstance(label, bool) \
                    or not 0 <= label < len(choices):
                problems.append(f"row {e.id}: '{task.target}' must be a choice index "
                                f"0..{len(choices) - 1}, got {label!r}")
                break
    if problems:
        raise DataError(f"task '{task.name}' ({source}): " + "; ".join(problems))


def build_examples(task: TaskSpec, rows: list[dict[str, Any]], source: str,
                   limit: int | None, allow_empty_target: bool = False,
                   policy: CodePolicy = DEFAULT_POLICY) -> TaskData:
    """Transform, map fields, check values, hash: raw rows -> TaskData."""
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise DataError(f"task '{task.name}': {source} has no rows")
    if task.transform:
        fn = load_transform(task.transform, policy, task.name, task.source)
        rows = _apply_transform(fn, task.transform, rows, task.name, source)
    columns = list(dict.fromkeys(c for r in rows[:50] for c in r))
    resolved = _resolve_columns(task, columns, source)
    examples: list[Example] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        values = {f: row.get(col) for f, col in resolved.items()}
        gold = values.get(task.target)
        if task.kind == "multiple_choice" and isinstance(gold, str) and gold.strip().isdigit():
            values[task.target] = int(gold)
        if task.id_field:
            raw_id = values[task.id_field]
            if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or \
                    (isinstance(raw_id, str) and not raw_id.strip()):
                raise DataError(f"task '{task.name}' ({source}): row {i} has id {raw_id!r} in "
                                f"'{task.id_field}'; ids must be non-empty text or integers")
            ex_id = str(raw_id)
        else:
            ex_id = str(i)
        if ex_id in seen:
            raise DataError(f"task '{task.name}': id '{ex_id}' occurs twice in {source}; "
                            f"ids in '{task.id_field}' must be unique")
        seen.add(ex_id)
        bad = _unencodable(values)  # a lone surrogate from JSON cannot be encoded or hashed
        if bad is not None:
            raise DataError(f"task '{task.name}' ({source}): row {ex_id}, field '{bad}' holds "
                            f"text that is not valid Unicode (a lone surrogate such as "
                            f"\\ud800?); fix the data file")
        digest = hashlib.sha256(canonical_json(values).encode()).hexdigest()
        examples.append(Example(id=ex_id, fields=values, hash=digest))
    _check_values(task, examples, source, allow_empty_target)
    whole = hashlib.sha256("".join(e.hash for e in examples).encode()).hexdigest()
    return TaskData(source=source, sha256=whole, examples=tuple(examples))


def load_task_data(task: TaskSpec, path: str | None, limit: int | None,
                   allow_empty_target: bool = False,
                   policy: CodePolicy = DEFAULT_POLICY) -> TaskData:
    """Rows for a task from `path` if given, else from its hub dataset. Empty references are
    an error unless allow_empty_target (the trainer drops and counts them). A transform runs
    only where `policy` permits it (checked before any row is read).
    """
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be a positive integer, got {limit}")
    if task.transform:
        policy.check_transform(task.transform, task.name, task.source)
    if path is not None:
        p = Path(path).expanduser()
        return build_examples(task, read_file(p), f"file:{p}", limit, allow_empty_target,
                              policy)
    ds = task.dataset
    if ds.file:
        p = Path(ds.file)
        return build_examples(task, read_file(p), f"file:{p}", limit, allow_empty_target,
                              policy)
    if not ds.hub:
        raise ConfigError(f"task '{task.name}' has no default data; give it a file: "
                          f"--data {task.name}=PATH.jsonl")
    source = f"hub:{ds.hub}" + (f"/{ds.config}" if ds.config else "") + f":{ds.split}"
    return build_examples(task, read_hub(task, limit), source, limit, allow_empty_target,
                          policy)
