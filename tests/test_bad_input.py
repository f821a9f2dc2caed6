"""Bad input: one line on stderr saying what to fix, exit code 2, no traceback, no output."""

import json
import subprocess
import sys

import pytest

from harness.cli import main


def _fails(capsys, argv, pattern, out=None):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:")
    assert "Traceback" not in err
    import re

    assert re.search(pattern, lines[0]), lines[0]
    if out is not None:
        assert not out.exists() or not any(out.iterdir())
    return lines[0]


@pytest.fixture
def run_args(tiny_lm, example_data, tmp_path):
    def build(*extra, tasks="hellaswag", data=None):
        data = data or {"hellaswag": example_data["hellaswag"]}
        argv = ["run", "--base", str(tiny_lm), "--tasks", tasks, "--out", str(tmp_path / "out"),
                "--limit", "3"]
        for t, p in data.items():
            argv += ["--data", f"{t}={p}"]
        return argv + list(extra)
    return build


def test_unknown_task_suggests(capsys, run_args, tmp_path):
    _fails(capsys, run_args(tasks="helaswag"), r"unknown task 'helaswag'\. Did you mean: "
           r"hellaswag\?", tmp_path / "out")


def test_malformed_yaml_names_file_and_line(capsys, tmp_path):
    (tmp_path / "mine.yaml").write_text("name: mine\nkind: [generation\n")
    _fails(capsys, ["tasks", "--tasks-dir", str(tmp_path)], r"mine\.yaml: line \d+: malformed")


def test_unknown_key_and_all_problems_at_once(capsys, tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "name: mine\nkind: generation\ndataset: {hub: x/y, split: test}\n"
        "fields: {q: question}\nprompt: '{q} {nope}'\ntarget: q\nmetrics: [rogue]\n"
        "temprature: 0.1\n")
    line = _fails(capsys, ["tasks", "--tasks-dir", str(tmp_path)], r"mine\.yaml")
    assert "unknown key 'temprature'" in line
    assert "{nope}" in line
    assert "metric 'rogue'" in line and "Did you mean: rouge" in line


def test_missing_dataset_column(capsys, run_args, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "a", "summary": "b"}) + "\n")
    _fails(capsys, run_args(tasks="pubmed", data={"pubmed": bad}),
           r"has no column 'article'.*\(columns: text, summary\)", tmp_path / "out")


def test_data_file_missing(capsys, run_args, tmp_path):
    _fails(capsys, run_args(data={"hellaswag": tmp_path / "nope.jsonl"}),
           r"data file .*nope\.jsonl does not exist", tmp_path / "out")


def test_empty_references(capsys, run_args, tmp_path):
    bad = tmp_path / "empty.jsonl"
    bad.write_text(json.dumps({"article": "x", "abstract": ""}) + "\n")
    _fails(capsys, run_args(tasks="pubmed", data={"pubmed": bad}), r"empty reference 'abstract'",
           tmp_path / "out")


def test_adapter_without_config(capsys, run_args, tmp_path):
    folder = tmp_path / "not-an-adapter"
    folder.mkdir()
    _fails(capsys, run_args("--adapter", str(folder)), r"no adapter_config\.json",
           tmp_path / "out")


def test_adapter_for_another_base(capsys, other_base, adapter, example_data, tmp_path):
    argv = ["run", "--base", str(other_base), "--adapter", str(adapter), "--tasks", "hellaswag",
            "--data", f"hellaswag={example_data['hellaswag']}", "--out", str(tmp_path / "out")]
    _fails(capsys, argv, r"does not fit base .*trained on another base", tmp_path / "out")


def test_4bit_without_bitsandbytes(capsys, run_args, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails as if not installed
    _fails(capsys, run_args("--load-in-4bit"), r"--load-in-4bit needs bitsandbytes",
           tmp_path / "out")


def test_bad_cli_values(capsys, run_args):
    _fails(capsys, run_args("--limit", "0"), r"--limit: expected a positive integer")
    _fails(capsys, run_args("--data", "hellaswag"), r"expected TASK=PATH")
    _fails(capsys, ["run", "--tasks", "x", "--out", "o"], r"required: --base")


def test_data_for_task_not_requested(capsys, run_args, example_data):
    _fails(capsys, run_args(data={"hellaswag": example_data["hellaswag"],
                                  "pubmed": example_data["pubmed"]}),
           r"--data names task 'pubmed', which is not in --tasks")


def test_missing_base_folder(capsys, run_args, tmp_path):
    argv = run_args()
    argv[argv.index("--base") + 1] = str(tmp_path / "no-model")
    _fails(capsys, argv, r"no such model folder")


def test_process_level_exit_code_and_no_traceback(tmp_path):
    """Through a real process: exit status 2, one stderr line."""
    proc = subprocess.run([sys.executable, "-m", "harness", "tasks", "show", "pubmd"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        proc.stderr.strip()] and "Did you mean: pubmed?" in proc.stderr
