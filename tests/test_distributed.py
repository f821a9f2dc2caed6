"""Data-parallel evaluation: the same run on 1 process and on 2 (torchrun, gloo on CPU) gives
the same report."""

import json
import os
import subprocess
import sys

from tests_helpers import strip_report


def test_two_processes_give_the_same_report(tiny_lm, example_data, tmp_path):
    args = ["run", "--base", str(tiny_lm), "--tasks", "cnn_dailymail,hellaswag", "--data",
            f"cnn_dailymail={example_data['cnn_dailymail']}", "--data",
            f"hellaswag={example_data['hellaswag']}", "--limit", "12", "--max-new-tokens", "8",
            "--bertscore-model", "x", "--bertscore-layers", "1", "--device", "cpu"]
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    env = {**os.environ, "HARNESS_NO_PROGRESS": "1", "HARNESS_STORE_CHUNK": "3"}
    # cnn_dailymail without BERTScore: a task dir overriding nothing is not enough, so score
    # ROUGE + words through a user task of the same prompt.
    (tasks / "news.yaml").write_text(
        "name: news\nkind: generation\ndataset: {hub: abisee/cnn_dailymail, split: test}\n"
        "fields: {id: id, article: article, highlights: highlights}\nid_field: id\n"
        "prompt: \"[INST] Summarize the following news article:\\n\\n{article}\\n\\n"
        "Summary: [/INST]\"\ntruncate: article\ntarget: highlights\nmetrics: [rouge, words]\n")
    args[args.index("cnn_dailymail,hellaswag")] = "news,hellaswag"
    args[args.index(f"cnn_dailymail={example_data['cnn_dailymail']}")] = \
        f"news={example_data['cnn_dailymail']}"
    args += ["--tasks-dir", str(tasks)]
    one = tmp_path / "one"
    two = tmp_path / "two"
    subprocess.run([sys.executable, "-m", "harness", *args, "--out", str(one), "--cache-dir",
                    str(tmp_path / "c1")], env=env, check=True, timeout=300)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                           "2", "--master_port", "29517", "-m", "harness", *args, "--out",
                           str(two), "--cache-dir", str(tmp_path / "c2")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a = json.loads((one / "report.json").read_text())
    b = json.loads((two / "report.json").read_text())
    assert strip_report(a) == strip_report(b)
    assert (one / "samples" / "news.jsonl").read_text() == \
        (two / "samples" / "news.jsonl").read_text()
    # Each rank computed about half of the examples and wrote them to the shared store.
    import sqlite3

    db = sqlite3.connect(tmp_path / "c2" / "results.sqlite")
    assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 24
