"""Frozen, typed specifications. Everything past the CLI and YAML loaders takes these."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.options import EngineOptions
from harness.policy import CodePolicy

TaskKind = Literal["generation", "multiple_choice", "perplexity"]
ChatMode = Literal["never", "auto", "always"]
BackendName = Literal["hf", "lm-eval"]  # backend.BACKENDS
Quantization = Literal["none", "4bit", "8bit"]
DType = Literal["auto", "float32", "bfloat16", "float16"]


@dataclass(frozen=True)
class DatasetSpec:
    """Where a task's rows come from by default: a hub dataset, or a file relative to the task
    YAML, or nothing (then `--data` is required). `--data` always wins.
    """

    split: str = "test"
    hub: str | None = None
    config: str | None = None
    revision: str | None = None
    file: str | None = None


@dataclass(frozen=True)
class GenerationSpec:
    """Decoding settings. Greedy unless do_sample; a sampling run is seeded."""

    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskSpec:
    """One task definition, read from a YAML file in tasks/ or a user's --tasks-dir.

    Fields (each documented here only):
        name: registry name, used in --tasks and in reports.
        kind: generation | multiple_choice | perplexity.
        dataset: the default hub dataset.
        fields: task field -> dataset column; the template and target use task fields.
        prompt: template with {field} placeholders. For multiple_choice, the context.
        target: task field holding the reference text (generation, perplexity) or the gold
            choice index (multiple_choice).
        version: bump when a change alters results; part of the task fingerprint.
        description: one line for `harness tasks`.
        chat_template: never | auto (the model's chat template when its tokenizer has one) | always.
        chat_prompt: user message when a chat template applies (default: prompt).
        truncate: the one field that may be cut when the prompt exceeds the model's context.
        choices: multiple_choice only: task field holding the list of choices.
        target_delimiter: put between context and continuation (multiple_choice, perplexity).
        transform: "module:function" applied to each raw row before the field mapping.
        id_field: task field with a stable example id (default: the row position).
        generation: decoding settings (generation only).
        metrics: metric families, see harness.metrics.FAMILIES.
        source: the YAML file it came from (set by the loader).
    """

    name: str
    kind: TaskKind
    dataset: DatasetSpec
    fields: tuple[tuple[str, str], ...]
    prompt: str
    target: str
    version: int = 1
    description: str = ""
    chat_template: ChatMode = "never"
    chat_prompt: str | None = None
    truncate: str | None = None
    choices: str | None = None
    target_delimiter: str = " "
    transform: str | None = None
    id_field: str | None = None
    generation: GenerationSpec = field(default_factory=GenerationSpec)
    metrics: tuple[str, ...] = ()
    source: str = "<memory>"

    @property
    def field_map(self) -> dict[str, str]:
        """Task field -> dataset column."""
        return dict(self.fields)


@dataclass(frozen=True)
class ModelSpec:
    """What to load: a base (hub id or folder) and optional PEFT adapters."""

    base: str
    adapters: tuple[str, ...] = ()
    include_base: bool = False
    quantization: Quantization = "none"
    dtype: DType = "auto"
    device: str | None = None
    revision: str | None = None
    trust_remote_code: bool = False
    max_length: int | None = None


@dataclass(frozen=True)
class BertScoreSpec:
    """BERTScore model and layer; defaults are bert-score's own for English (roberta-large, 17)."""

    model: str = "roberta-large"
    num_layers: int | None = 17
    batch_size: int = 64
    idf: bool = False


@dataclass(frozen=True)
class RunSpec:
    """Everything `harness run` needs, resolved from flags."""

    model: ModelSpec
    tasks: tuple[str, ...]
    data: tuple[tuple[str, str], ...] = ()
    limit: int | None = None
    batch_size: int | None = None
    engine: EngineOptions = field(default_factory=EngineOptions)  # how the engine computes
    max_new_tokens: int | None = None
    bertscore: BertScoreSpec = field(default_factory=BertScoreSpec)
    bootstrap: int = 1000
    seed: int = 0
    cache_dir: Path | None = None   # the result store's folder; None: no store
    refresh: bool = False           # recompute (and overwrite) what the store holds
    lm_eval_include: tuple[Path, ...] = ()  # folders of lm-eval task YAMLs
    code: CodePolicy = field(default_factory=CodePolicy)  # which task code may run
    chat_template: ChatMode | None = None  # --chat-template: overrides the tasks' setting
    seeds: int = 1                  # --seeds: sampling generation tasks run once per seed
    backend: BackendName = "hf"     # --backend: whose code makes the model calls

    @property
    def lm_eval_tasks(self) -> tuple[str, ...]:
        """Tasks given as lm_eval:NAME, without the prefix."""
        return tuple(t.split(":", 1)[1] for t in self.tasks if t.startswith("lm_eval:"))
