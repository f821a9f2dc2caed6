"""Strict YAML reading for every file and value a user hands the harness (task files, recipes,
gate rules, `--set` values, the user config).

On top of `yaml.safe_load` (no Python objects, no code): a key given twice in one mapping is
an error (PyYAML would keep the last one silently), and a document nested deeper than
MAX_DEPTH or holding more than MAX_NODES values (aliases counted once per use, the "billion
laughs" shape) is refused. Every failure is a ConfigError naming the file and, where PyYAML
knows it, the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError

MAX_DEPTH = 32
MAX_NODES = 200_000


class _StrictLoader(yaml.SafeLoader):
    """safe_load's constructors, with duplicate keys rejected."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hashable = hash(key) is not None
            except TypeError:
                hashable = False
            if not hashable:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is given twice (first on line {seen[key]})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _check_shape(value: Any, where: str) -> None:
    """Depth and size limits, walking shared (aliased) nodes once per use, iteratively."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    count = 0
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ConfigError(f"{where}: the document holds more than {MAX_NODES} values "
                              f"(expanded aliases counted); refusing it")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{where}: nested deeper than {MAX_DEPTH} levels; refusing it")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _problem(err: yaml.YAMLError, where: str) -> str:
    mark = getattr(err, "problem_mark", None)
    line = f" line {mark.line + 1}:" if mark is not None else ""
    problem = getattr(err, "problem", None) or (str(err).splitlines() or ["malformed"])[0]
    return f"{where}:{line} malformed YAML: {problem}"


def loads(text: str, where: str) -> Any:
    """Parse one YAML document from text; `where` names it in errors."""
    try:
        loader = _StrictLoader(text)  # what yaml.load does, with the safe constructors
        try:
            value = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        raise ConfigError(_problem(err, where)) from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to read; refusing it") from None
    _check_shape(value, where)
    return value


def load_file(path: Path, what: str) -> Any:
    """Read and parse a UTF-8 YAML file; `what` says what it is in errors ("task file")."""
    try:
        if path.is_dir():
            raise ConfigError(f"{what} {path} is a folder; give a YAML file")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except OSError as err:
        raise ConfigError(f"{what} {path} cannot be read ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line} is not valid UTF-8; re-save the {what} as "
                          f"UTF-8") from None
    return loads(text, str(path))
