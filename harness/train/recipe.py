"""Training recipes: YAML validated into a frozen TrainSpec, with `--set key.sub=value`."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from harness import yamlio
from harness.errors import ConfigError
from harness.paths import check_name

Optimizer = Literal["adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "sgd"]
Schedule = Literal["cosine", "linear", "constant"]
Precision = Literal["bf16", "fp16", "fp32"]


@dataclass(frozen=True)
class SplitSpec:
    """Rows for one side of training: a hub split of the task's dataset, or a local file."""

    split: str
    limit: int | None = None
    file: str | None = None


@dataclass(frozen=True)
class LoraSpec:
    """The recipe's `lora:` section: rank, alpha, dropout, target modules, bias."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    bias: Literal["none", "all", "lora_only"] = "none"


@dataclass(frozen=True)
class TrainingSpec:
    """Optimisation settings. epochs unless max_steps; a step is one optimizer update."""

    epochs: float = 1.0
    max_steps: int | None = None
    micro_batch_size: int = 1
    gradient_accumulation: int = 1
    learning_rate: float = 2e-4
    schedule: Schedule = "cosine"
    warmup_steps: int = 0
    warmup_ratio: float | None = None
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    optimizer: Optimizer = "adamw_torch"
    precision: Precision = "bf16"
    gradient_checkpointing: bool = False
    checkpoint_fraction: float = 1.0
    compile: bool = False
    max_length: int = 2048
    eval_every: int = 200
    eval_batch_size: int = 4
    early_stopping_patience: int | None = None
    early_stopping_min_delta: float = 0.0
    save_every: int = 200
    save_total_limit: int = 1
    log_every: int = 10
    seed: int = 42


@dataclass(frozen=True)
class TrainSpec:
    """A whole recipe.

    Fields:

    name: output folder name under adapters/ (and the recipe's identity).
    base: hub id or local folder of the base model.
    task: registry task whose prompt, target and truncation the trainer uses.
    train / eval: where the rows come from (hub split + limit, or a local file).
    quantization: nf4 (4-bit NF4) | int8 | none; compute_dtype and double_quant for nf4.
    lora: adapter settings; training: optimisation settings.
    out: where to write (default adapters/<name>).
    """

    name: str
    base: str
    task: str
    train: SplitSpec
    eval: SplitSpec
    quantization: Literal["nf4", "int8", "none"] = "nf4"
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    double_quant: bool = True
    trust_remote_code: bool = False
    chat_template: Literal["auto", "always", "never"] | None = None  # None: the task's own
    lora: LoraSpec = field(default_factory=LoraSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    out: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain data (train_summary.json, trackers)."""
        data = asdict(self)
        data["lora"]["target_modules"] = list(self.lora.target_modules)
        return data


_SECTIONS = {"train": SplitSpec, "eval": SplitSpec, "lora": LoraSpec, "training": TrainingSpec}
_LITERALS = {
    ("", "quantization"): ("nf4", "int8", "none"),
    ("", "compute_dtype"): ("bfloat16", "float16", "float32"),
    ("", "chat_template"): ("auto", "always", "never"),
    ("lora", "bias"): ("none", "all", "lora_only"),
    ("training", "optimizer"): ("adamw_torch", "adamw_8bit", "paged_adamw_8bit",
                                "paged_adamw_32bit", "sgd"),
    ("training", "schedule"): ("cosine", "linear", "constant"),
    ("training", "precision"): ("bf16", "fp16", "fp32"),
}


def _parse_scalar(text: str, item: str) -> Any:
    if not text.strip():
        return ""
    try:
        return yamlio.loads(text, f"--set {item}")
    except ConfigError as err:
        raise ConfigError(f"{err} (quote a text value: --set 'key=\"...\"')") from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`key.sub=value` (value parsed as YAML: numbers, booleans, lists) into the raw mapping."""
    if not isinstance(raw, dict):
        raise ConfigError("a recipe must be a mapping of keys (name, base, task, ...)")
    data = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. training.max_steps=50")
        node = data
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(f"--set {item}: '{key}' is not a key path like training.max_steps")
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item}: '{part}' is not a section")
        node[parts[-1]] = _parse_scalar(value, item)
    return data


def _check_types(section: str, cls: type, values: dict[str, Any], problems: list[str]) -> None:
    prefix = f"{section}." if section else ""
    for f in fields(cls):
        if f.name not in values:
            continue
        v = values[f.name]
        kind = str(f.type)
        if v is None:
            if "None" not in kind and f.name not in _SECTIONS:
                problems.append(f"'{prefix}{f.name}' must not be empty (null)")
            continue
        allowed = _LITERALS.get((section, f.name))
        if allowed is not None:
            if v not in allowed:
                problems.append(f"'{prefix}{f.name}' must be one of {', '.join(allowed)}, "
                                f"got {v!r}")
        elif kind.startswith("int") and (not isinstance(v, int) or isinstance(v, bool)):
            problems.append(f"'{prefix}{f.name}' must be an integer, got {v!r}")
        elif kind.startswith("float") and (not isinstance(v, (int, float)) or isinstance(v, bool)):
            problems.append(f"'{prefix}{f.name}' must be a number, got {v!r}")
        elif kind == "bool" and not isinstance(v, bool):
            problems.append(f"'{prefix}{f.name}' must be true or false, got {v!r}")
        elif kind.startswith("str") and not isinstance(v, str):
            problems.append(f"'{prefix}{f.name}' must be a string, got {v!r}")


def _range_problems(t: dict[str, Any], lora: dict[str, Any]) -> list[str]:
    """Ranges of the numbers (types are checked before): finite, and where they make sense."""
    problems = []

    def num(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    for section, values in (("training", t), ("lora", lora)):
        for key, v in values.items():
            if num(v) and not math.isfinite(v):
                problems.append(f"'{section}.{key}' must be a finite number, got {v}")
    checks = [
        ("training.learning_rate", t.get("learning_rate"), lambda v: v > 0, "> 0"),
        ("training.epochs", t.get("epochs"), lambda v: v >= 1,
         ">= 1 (for less than one epoch set training.max_steps)"),
        ("training.warmup_steps", t.get("warmup_steps"), lambda v: v >= 0, ">= 0"),
        ("training.warmup_ratio", t.get("warmup_ratio"), lambda v: 0 <= v < 1, "in [0, 1)"),
        ("training.weight_decay", t.get("weight_decay"), lambda v: v >= 0, ">= 0"),
        ("training.max_grad_norm", t.get("max_grad_norm"), lambda v: v > 0, "> 0"),
        ("training.adam_beta1", t.get("adam_beta1"), lambda v: 0 <= v < 1, "in [0, 1)"),
        ("training.adam_beta2", t.get("adam_beta2"), lambda v: 0 <= v < 1, "in [0, 1)"),
        ("training.early_stopping_patience", t.get("early_stopping_patience"),
         lambda v: v >= 1, ">= 1"),
        ("training.early_stopping_min_delta", t.get("early_stopping_min_delta"),
         lambda v: v >= 0, ">= 0"),
        ("training.seed", t.get("seed"), lambda v: 0 <= v < 2**32, "in 0 .. 2**32 - 1"),
        ("lora.dropout", lora.get("dropout"), lambda v: 0 <= v < 1, "in [0, 1)"),
        ("lora.alpha", lora.get("alpha"), lambda v: v > 0, "> 0"),
    ]
    for key, v, ok, what in checks:
        if num(v) and math.isfinite(v) and not ok(v):  # type: ignore[arg-type]  # num: a number
            problems.append(f"'{key}' must be {what}, got {v}")
    return problems


def parse_recipe(raw: Any, source: str) -> TrainSpec:
    """A recipe from parsed YAML, every value checked."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a recipe must be a mapping of keys")
    top = {f.name for f in fields(TrainSpec)}
    problems = [f"unknown key '{k}' (allowed: {', '.join(sorted(top))})"
                for k in sorted(set(raw) - top)]
    problems += [f"missing required key '{k}'" for k in ("name", "base", "task", "train", "eval")
                 if k not in raw]
    _check_types("", TrainSpec, raw, problems)
    built: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        values = raw.get(section, {}) or {}
        if not isinstance(values, dict):
            problems.append(f"'{section}' must be a mapping")
            continue
        allowed = {f.name for f in fields(cls)}
        problems += [f"unknown key '{section}.{k}' (allowed: {', '.join(sorted(allowed))})"
                     for k in sorted(set(values) - allowed)]
        _check_types(section, cls, values, problems)
        if cls is SplitSpec and "split" not in values and section in raw:
            problems.append(f"missing required key '{section}.split'")
        if cls is SplitSpec and isinstance(values.get("limit"), int) and values["limit"] < 1:
            problems.append(f"'{section}.limit' must be >= 1, got {values['limit']}")
        built[section] = {k: v for k, v in values.items() if k in allowed}
    t = built.get("training", {})
    problems += _range_problems(t, built.get("lora", {}))
    if isinstance(raw.get("name"), str):
        try:
            check_name(raw["name"], "recipe name")
        except ConfigError as err:
            problems.append(str(err))
    for key in ("base", "task"):
        if isinstance(raw.get(key), str) and not raw[key].strip():
            problems.append(f"'{key}' is empty")
    for key in ("micro_batch_size", "gradient_accumulation", "max_length", "eval_every",
                "save_every", "max_steps", "eval_batch_size", "log_every", "save_total_limit"):
        if isinstance(t.get(key), int) and t[key] < 1:
            problems.append(f"'training.{key}' must be >= 1, got {t[key]}")
    frac = t.get("checkpoint_fraction")
    if isinstance(frac, (int, float)) and not 0 <= frac <= 1:
        problems.append(f"'training.checkpoint_fraction' must be within 0..1, got {frac}")
    lora = built.get("lora", {})
    if isinstance(lora.get("r"), int) and lora["r"] < 1:
        problems.append(f"'lora.r' must be >= 1, got {lora['r']}")
    if "target_modules" in lora and (not isinstance(lora["target_modules"], list) or not all(
            isinstance(m, str) for m in lora["target_modules"]) or not lora["target_modules"]):
        problems.append("'lora.target_modules' must be a non-empty list of module names")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    if "target_modules" in lora:
        lora["target_modules"] = tuple(lora["target_modules"])
    return TrainSpec(
        name=raw["name"], base=raw["base"], task=raw["task"],
        train=SplitSpec(**built["train"]), eval=SplitSpec(**built["eval"]),
        quantization=raw.get("quantization", "nf4"),
        compute_dtype=raw.get("compute_dtype", "bfloat16"),
        double_quant=raw.get("double_quant", True),
        trust_remote_code=raw.get("trust_remote_code", False),
        chat_template=raw.get("chat_template"),
        lora=LoraSpec(**lora), training=TrainingSpec(**t), out=raw.get("out"))


def load_recipe(path: Path, overrides: list[str]) -> TrainSpec:
    """A recipe file with key=value overrides applied, checked."""
    raw = yamlio.load_file(path, "recipe")
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of keys (name, base, task, ...)")
    try:
        merged = apply_overrides(raw or {}, overrides)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return parse_recipe(merged, str(path))
