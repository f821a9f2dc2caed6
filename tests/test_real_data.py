"""Each built-in task loads and runs on its real file from ../shared/data (skipped if absent)."""

import json

import pytest
from conftest import shared_file

from harness.cli import main

CASES = {
    "pubmed": ("pubmed_summarization", "pubmed_test.jsonl"),
    "cnn_dailymail": ("cnn_dailymail", "cnn_dailymail_test_frank250.jsonl"),
    "medquad": ("medquad", "medquad.jsonl"),
    "hellaswag": ("hellaswag", "hellaswag_val.jsonl"),
}


@pytest.mark.parametrize("task", sorted(CASES))
def test_builtin_task_runs_on_real_rows(task, tiny_lm, minilm, tmp_path, capsys):
    path = shared_file(*CASES[task])
    out = tmp_path / task
    code = main(["run", "--base", str(tiny_lm), "--tasks", task, "--data", f"{task}={path}",
                 "--limit", "4", "--max-new-tokens", "4", "--bertscore-model", str(minilm),
                 "--bertscore-layers", "6", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    result = report["tasks"][task]
    assert result["n"] == 4
    if task in ("pubmed", "cnn_dailymail"):
        # Real articles are longer than the tiny model's 512-token context: only the article
        # field is cut, and the report counts it.
        assert result["truncated"] > 0
        samples = [json.loads(x) for x in (out / "samples" / f"{task}.jsonl").open()]
        assert all(s["prompt_tokens"] <= 512 - 4 for s in samples)
    if task == "cnn_dailymail":
        ids = [json.loads(x)["id"] for x in (out / "samples" / f"{task}.jsonl").open()]
        assert ids[0] == json.loads(path.open().readline())["id"]
