"""compare --candidate: two models (here a base and its merged export), the same paired report
plus a divergence section whose figures equal a direct computation; gate rules on them."""

import json
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main


@pytest.fixture(scope="module")
def merged(tiny_lm, adapter, tmp_path_factory):
    out = tmp_path_factory.mktemp("merged") / "lora-a-merged"
    assert main(["export", str(adapter), "--merge", "--base", str(tiny_lm), "--out",
                 str(out)]) == 0
    return out


def _direct(base, candidate, texts):
    """KL(base || candidate) per predicted token, same-top rate and PPL ratio, by hand."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    models = [AutoModelForCausalLM.from_pretrained(p).eval() for p in (base, candidate)]
    kls, same, nll = [], 0, [0.0, 0.0]
    count = 0
    for text in texts:
        ids = tok(text, return_tensors="pt").input_ids
        with torch.no_grad():
            lp = [torch.log_softmax(m(input_ids=ids).logits[0, :-1].float(), -1) for m in models]
        p, q = lp[0].exp(), lp[1].exp()
        kls += (p * (lp[0] - lp[1])).sum(-1).tolist()
        same += int((p.argmax(-1) == q.argmax(-1)).sum())
        for i in range(2):
            nll[i] -= float(lp[i].gather(1, ids[0, 1:, None]).sum())
        count += ids.shape[1] - 1
    return (float(np.mean(kls)), same / count,
            float(np.exp(nll[1] / count) / np.exp(nll[0] / count)))


def test_candidate_comparison_with_divergence(tiny_lm, merged, example_data, tmp_path, capsys):
    text = tmp_path / "texts.jsonl"
    texts = ["The committee met on Tuesday to review the budget.",
             "Local leaders welcomed the plan, saying the jobs were badly needed."]
    text.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = tmp_path / "cmp"
    assert main(["compare", "--base", str(tiny_lm), "--candidate", str(merged), "--tasks",
                 "hellaswag", "--data", f"hellaswag={example_data['hellaswag']}", "--limit",
                 "8", "--general", "hellaswag", "--text", str(text), "--no-cache", "--out",
                 str(out)]) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "models" and report["after"]["label"] == "lora-a-merged"
    assert report["before"]["label"] == Path(str(tiny_lm)).name
    block = report["divergence"]
    kld, same, ratio = _direct(tiny_lm, merged, texts)
    assert block["texts"] == 2 and block["kld_mean"] == pytest.approx(kld, rel=1e-4)
    assert block["same_top_token"] == pytest.approx(same) and block["kld_mean"] > 0.01
    assert block["ppl_ratio"] == pytest.approx(ratio, rel=1e-4)
    md = (out / "report.md").read_text()
    assert "## Divergence (candidate vs base)" in md and "| Metric | Base | Candidate |" in md
    capsys.readouterr()
    # gate rules on the divergence figures
    assert main(["gate", str(out), "--rule", f"divergence.kld_mean < {kld * 2}"]) == 0
    assert main(["gate", str(out), "--rule", f"divergence.kld_mean < {kld / 2}"]) == 1
    assert main(["gate", str(out), "--rule", "divergence.kld_men < 1"]) == 2
    assert "unknown divergence figure 'kld_men'" in capsys.readouterr().err


def test_identical_models_do_not_diverge(merged, example_data, tmp_path, capsys):
    out = tmp_path / "same"
    assert main(["compare", "--base", str(merged), "--candidate", str(merged), "--tasks",
                 "hellaswag", "--data", f"hellaswag={example_data['hellaswag']}", "--limit",
                 "6", "--no-cache", "--out", str(out)]) == 0, capsys.readouterr().err
    block = json.loads((out / "report.json").read_text())["divergence"]
    assert block["source"].startswith("the tasks' prompts") and block["tokens"] > 50
    assert block["kld_mean"] == pytest.approx(0, abs=1e-9)
    assert block["same_top_token"] == 1.0 and block["ppl_ratio"] == pytest.approx(1.0)


def test_candidate_errors_are_one_line(tiny_lm, adapter, tmp_path, capsys):
    from harness import examples
    from harness.tiny import build_tiny_lm

    other = build_tiny_lm(tmp_path / "other", examples.corpus(), vocab_size=700)
    cases = [
        (["--candidate", str(other)], "do not share a tokenizer"),
        (["--candidate", str(other), "--adapter", str(adapter)], "no --adapter"),
        (["--adapter", str(adapter), "--text", str(tmp_path / "t.txt")], "--text is for"),
    ]
    for extra, message in cases:
        out = tmp_path / "x"
        assert main(["compare", "--base", str(tiny_lm), "--tasks", "hellaswag", "--no-cache",
                     "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert not out.exists()
