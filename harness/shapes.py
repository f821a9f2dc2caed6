"""The shapes that cross modules: a per-example record (kinds -> store -> samples -> compare),
a task's result, a run report and a comparison report (runner/compare -> report.json -> gate,
leaderboard, show, trackers). TypedDicts, so they stay the plain JSON they are written as, and
mypy checks every key a module reads or writes. docs/report-schema.md documents the fields;
report/schema.py checks a loaded file against the ones the readers use before it is cast here.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from typing_extensions import NotRequired, Required


class Record(TypedDict, total=False):
    """One example's outcome: built by a kind, kept by the store, written to samples/TASK.jsonl.

    `prediction` and `reference` are the kind's own: generation's text and the reference text;
    multiple choice's `ChoicePrediction` and the gold index; perplexity's
    `PerplexityPrediction` and the scored text; lm-eval's `{"filtered_resps": ...}` and its
    target. `metrics` holds per-example values by metric name, and, under a corpus family's
    `stats_key`, that family's per-example statistics.
    """

    id: Required[str]
    example_hash: str  # the example's content hash: the store's key (scored files have none)
    prompt_hash: str
    truncated: bool
    prediction: Any
    reference: Any
    metrics: dict[str, Any]
    input: dict[str, Any]  # prompts.shown_input; added after the store (which keeps no inputs)
    seed: int  # with --seeds K: which sampling seed made this record
    prompt_tokens: int
    new_tokens: int
    hit_max_new_tokens: bool
    chat_template: bool
    target_nll: PerplexityPrediction  # generation + perplexity: the reference's NLL


class LmEvalIndex(TypedDict):
    """The result store's row for a whole lm-eval task (example hash "__index__"): its
    examples' hashes and ids in lm-eval's order, and lm-eval's own figures.
    """

    example_hash: Literal["__index__"]
    hashes: list[str]
    ids: list[str]
    info: dict[str, Any]


class ChoicePrediction(TypedDict):
    """A multiple-choice record's prediction."""

    choice: int
    choice_norm: int
    loglikelihoods: list[float]
    is_greedy: list[bool]


class PerplexityPrediction(TypedDict):
    """A perplexity record's prediction: the text's negative log-likelihood and its tokens."""

    nll: float
    n_tokens: int


class MetricSummary(TypedDict):
    """One metric over a task: stats.Summary.to_json."""

    value: float | None
    ci95: list[float | None]
    stderr: float | None
    n: int
    ci_method: str


class DatasetInfo(TypedDict):
    """Where a task's rows came from."""

    source: str
    sha256: str
    n: int


class TaskExtras(TypedDict, total=False):
    """What a kind (Kind.extras) and the runner add to a task's result."""

    degenerate: dict[str, Any]  # generation: degenerate.summarize of its outputs
    prompt_format: str  # "chat template" or "plain"
    seeds: dict[str, Any]  # with --seeds K: the seeds, their variance, how the CI clusters


class TaskResult(TaskExtras, total=False):
    """One task in a run report (report.json `tasks.NAME`)."""

    kind: Required[str]
    dataset: Required[DatasetInfo]
    n: Required[int]
    truncated: int
    config: Required[dict[str, Any]]
    task_fingerprint: str
    metrics: Required[dict[str, MetricSummary]]
    metric_config: dict[str, Any]
    timings: dict[str, Any]


class EngineRan(TypedDict):
    """What the engine did for one variant: its decode path, fused kernels and back-offs."""

    decode_mode: str | None
    decode_attention: str | None
    fused_kernels: list[str]
    backoffs: int


class RunEntry(TypedDict):
    """One evaluated model of a run report: its label, fingerprint and tasks."""

    label: str
    model: dict[str, Any]
    tasks: dict[str, TaskResult]
    engine: NotRequired[EngineRan]


class RunReport(TypedDict, total=False):
    """report.json of `harness run`: one model at top level, several under `runs`."""

    schema_version: Required[int]
    kind: Required[Literal["run"]]
    harness_version: str
    versions: Required[dict[str, Any]]
    device: Required[dict[str, Any]]
    settings: dict[str, Any]
    created_at: str
    timings: dict[str, Any]
    label: str
    model: dict[str, Any]
    tasks: dict[str, TaskResult]
    engine: EngineRan
    runs: list[RunEntry]


class ComparedMetric(TypedDict, total=False):
    """One metric of a comparison: the paired delta, its interval, test and power."""

    before: Required[float | None]
    after: Required[float | None]
    delta: Required[float | None]
    ci95: Required[list[float | None]]
    ci_method: str
    p_value: float | None
    significant: bool | None
    p_adjusted: float | None
    significant_adjusted: bool | None
    mde: float | None
    higher_is_better: bool | None


class ComparedTask(TypedDict, total=False):
    """One task of a comparison report."""

    role: Required[Literal["target", "general"]]
    kind: str
    n: int
    dataset: DatasetInfo
    metrics: Required[dict[str, ComparedMetric]]
    metrics_not_compared: list[str]
    config: dict[str, Any]
    examples: list[dict[str, Any]]
    seeds: dict[str, Any]
    degenerate: dict[str, Any]
    reference_words: float  # tasks with ref_words: the references' mean length


class Side(TypedDict):
    """One side of a comparison: the model's label and fingerprint."""

    label: str
    model: dict[str, Any]


class ComparisonReport(TypedDict, total=False):
    """report.json of `harness compare`."""

    schema_version: Required[int]
    kind: Required[Literal["comparison"]]
    harness_version: str
    versions: dict[str, Any]
    device: dict[str, Any]
    created_at: str
    settings: dict[str, Any]
    before: Required[Side]
    after: Required[Side]
    general: list[str]
    targets: list[str]
    forgetting: Required[list[dict[str, Any]]]
    tasks: Required[dict[str, ComparedTask]]
    divergence: dict[str, Any]  # compare --candidate: the divergence figures
    mode: str  # compare --candidate: "models"
    timings: dict[str, Any]


Report = RunReport | ComparisonReport
