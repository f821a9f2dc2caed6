"""Trainer: LoRA and 4-bit QLoRA on CPU, data masking/truncation, resume, bad recipes."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tests_helpers import write_recipe

from harness import examples
from harness.cli import main
from harness.data import Example
from harness.registry import discover_tasks
from harness.train.collate import IGNORE, build_train_examples


@pytest.fixture(scope="module")
def news_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("news")
    rows = examples.news(80)
    return (examples.write_jsonl(rows[:64], root / "train.jsonl"),
            examples.write_jsonl(rows[64:], root / "eval.jsonl"))


def _train(recipe, news_files, out, *extra):
    train, evals = news_files
    return main(["train", str(recipe), "--data", f"cnn_dailymail={train}", "--data",
                 f"cnn_dailymail:eval={evals}", "--out", str(out), *extra])


@pytest.fixture(scope="module")
def trained(tiny_lm, news_files, tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    # The plain [INST] template, as held_in below evaluates it (the tiny model's chat template
    # is exercised by tests/test_chat_template.py).
    assert _train(write_recipe(root, tiny_lm), news_files, root / "adapter",
                  "--chat-template", "never") == 0
    return root / "adapter"


def test_lora_training_outputs(trained, tiny_lm):
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json",
                 "recipe.resolved.yaml", "train_log.jsonl", "train_summary.json", "loss.png"):
        assert (trained / name).exists(), name
    log = [json.loads(x) for x in (trained / "train_log.jsonl").read_text().splitlines()]
    evals = [r["eval_loss"] for r in log if "eval_loss" in r]
    assert len(evals) == 4 and evals[-1] < evals[0] - 1.0     # eval loss falls
    assert all({"loss", "lr", "grad_norm", "tokens_per_s"} <= set(r) for r in log
               if r["step"] % 5 == 0)
    summary = json.loads((trained / "train_summary.json").read_text())
    assert summary["best_eval_loss"] == min(evals)
    assert summary["eval_perplexity"] == pytest.approx(2.718281828 ** min(evals), rel=1e-6)
    assert summary["train_examples"]["kept"] == 64
    weights = load_file(str(trained / "adapter_model.safetensors"))
    assert weights and all("lora_" in k for k in weights)
    assert any(float(v.abs().sum()) > 0 for k, v in weights.items() if "lora_B" in k)


def test_adapter_loads_in_plain_peft_and_leaves_base_alone(trained, tiny_lm):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[1, 20, 30, 40, 50]])
    base = AutoModelForCausalLM.from_pretrained(tiny_lm)
    with torch.no_grad():
        before = base(ids).logits.clone()
    model = PeftModel.from_pretrained(base, str(trained))
    with torch.no_grad():
        adapted = model(ids).logits
        with model.disable_adapter():
            off = model(ids).logits
    assert torch.allclose(off, before, atol=1e-6)       # base weights unchanged
    assert not torch.allclose(adapted, before, atol=1e-3)


def test_train_then_run_improves_rouge_on_held_in_rows(trained, tiny_lm, news_files, tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--base", str(tiny_lm), "--adapter", str(trained), "--tasks",
                 "held_in", "--data", f"held_in={news_files[0]}", "--limit", "12",
                 "--max-new-tokens", "40", "--resamples", "1000", "--out", str(out),
                 "--tasks-dir", str(_rouge_only_task(tmp_path))]) == 0
    report = json.loads((out / "report.json").read_text())
    rouge_l = report["tasks"]["held_in"]["metrics"]["rougeL"]
    assert rouge_l["delta"] > 0.10 and rouge_l["significant"], rouge_l


def _rouge_only_task(tmp_path: Path) -> Path:
    """cnn_dailymail's plain prompt scored with ROUGE only (no BERTScore model needed); the
    `trained` adapter was trained on that plain prompt (--chat-template never)."""
    d = tmp_path / "tasks"
    d.mkdir(exist_ok=True)
    (d / "held_in.yaml").write_text(
        "name: held_in\nkind: generation\ndataset: {hub: abisee/cnn_dailymail, split: test}\n"
        "fields: {id: id, article: article, highlights: highlights}\nid_field: id\n"
        "prompt: \"[INST] Summarize the following news article:\\n\\n{article}\\n\\n"
        "Summary: [/INST]\"\ntruncate: article\ntarget: highlights\nmetrics: [rouge]\n")
    return d


def test_qlora_nf4_on_cpu_gets_gradients(tiny_lm, news_files, tmp_path):
    pytest.importorskip("bitsandbytes")
    out = tmp_path / "q"
    assert _train(write_recipe(tmp_path, tiny_lm, quant="nf4", steps=10), news_files, out) == 0
    weights = load_file(str(out / "adapter_model.safetensors"))
    b = [v for k, v in weights.items() if "lora_B" in k]
    assert b and all(float(v.abs().sum()) > 0 for v in b)   # LoRA B starts at 0
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert all(r["grad_norm"] > 0 for r in log if "grad_norm" in r)


def test_resume_ends_where_uninterrupted_run_ends(tiny_lm, news_files, tmp_path):
    recipe = write_recipe(tmp_path, tiny_lm, steps=20)
    full = tmp_path / "full"
    assert _train(recipe, news_files, full, "--set", "training.save_total_limit=2") == 0
    assert sorted(p.name for p in (full / "checkpoints").iterdir()) == ["step-10", "step-20"]
    # The folder as a run killed between steps 10 and 20 leaves it: checkpoint 10, the log up
    # to then, no final adapter.
    part = tmp_path / "part"
    shutil.copytree(full, part)
    shutil.rmtree(part / "checkpoints" / "step-20")
    for name in ("adapter_model.safetensors", "train_summary.json", "loss.png"):
        (part / name).unlink()
    log = (part / "train_log.jsonl").read_text().splitlines()
    (part / "train_log.jsonl").write_text("\n".join(
        x for x in log if json.loads(x)["step"] <= 12) + "\n")
    assert _train(recipe, news_files, part, "--resume") == 0
    a = load_file(str(full / "adapter_model.safetensors"))
    b = load_file(str(part / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    def evals(folder):
        rows = [json.loads(x) for x in (folder / "train_log.jsonl").read_text().splitlines()]
        return [(r["step"], r.get("eval_loss")) for r in rows]

    assert evals(part) == evals(full)
    # Without --resume an existing run is not overwritten.
    assert _train(recipe, news_files, part) == 2


def test_data_masking_eos_and_truncation(tiny_lm):
    from transformers import AutoTokenizer

    from harness.prompts import with_chat_template

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    task = with_chat_template(discover_tasks()["cnn_dailymail"], "never")  # the plain template
    long_article = " ".join(["The council met again."] * 300)
    rows = [("a", "Short article about a farm.", "A farm opened."),
            ("b", long_article, "Council met."),
            ("c", "Empty target here.", "   ")]
    exs = [Example(i, {"id": i, "article": a, "highlights": h}, i) for i, a, h in rows]
    built, stats = build_train_examples(task, exs, tok, max_length=128)
    assert stats.kept == 2 and stats.dropped_empty_target == 1 and stats.truncated == 1
    short, long_ = built
    n_target = sum(1 for x in short.labels if x != IGNORE)
    target = tok.encode(" A farm opened.", add_special_tokens=False) + [tok.eos_token_id]
    assert list(short.labels[-n_target:]) == target == list(short.input_ids[-n_target:])
    assert all(x == IGNORE for x in short.labels[:-n_target])
    assert len(long_.input_ids) <= 128
    text = tok.decode(long_.input_ids)
    assert "Summary: [/INST] Council met." in text and "[INST] Summarize" in text
    # A template that leaves no room for any target token: dropped and counted.
    _, tight = build_train_examples(task, exs[:1], tok, max_length=len(
        tok.encode("[INST] Summarize the following news article:\n\n\n\nSummary: [/INST]")))
    assert tight.dropped_no_target_room == 1 and tight.kept == 0


def _fails(capsys, argv, pattern):
    import re

    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert re.search(pattern, err[0]), err[0]


def test_bad_recipes(tiny_lm, news_files, tmp_path, capsys):
    recipe = write_recipe(tmp_path, tiny_lm, steps=2)
    train, evals = news_files
    data = ["--data", f"cnn_dailymail={train}", "--data", f"cnn_dailymail:eval={evals}",
            "--out", str(tmp_path / "o")]
    for setting, error in (
            ("training.learnig_rate=1", r"unknown key 'training.learnig_rate'"),
            ("training.learning_rate=0", r"'training.learning_rate' must be > 0"),
            ("lora.target_modules=[q_proj,c_attn]",
             r"c_attn not in the model; its linear layers are: .*q_proj"),
            ("training.max_length=8", r"max_length 8 is shorter than the task's template"),
            ("training.optimizer=paged_adamw_8bit", r"paged_adamw_8bit needs a CUDA device"),
            ("training.precision=fp16", r"fp16 needs a CUDA device")):
        _fails(capsys, ["train", str(recipe), "--set", setting] + data, error)
    _fails(capsys, ["train", str(tmp_path / "none.yaml")] + data, r"does not exist")
