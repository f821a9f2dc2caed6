"""compare (in-process and over two run folders), gate exit codes, leaderboard."""

import json
from pathlib import Path

import pytest
from tests_helpers import compare_args

from harness.cli import main


@pytest.fixture(scope="module")
def runs(tiny_lm, adapter, example_data, minilm, tmp_path_factory):
    """An in-process comparison plus separate base and adapter run folders, same rows."""
    root = tmp_path_factory.mktemp("cmp")
    common = compare_args(example_data, minilm)
    assert main(["compare", "--base", str(tiny_lm), "--adapter", str(adapter), "--general",
                 "hellaswag", "--resamples", "2000", *common, "--out", str(root / "cmp")]) == 0
    assert main(["run", "--base", str(tiny_lm), *common, "--out", str(root / "before")]) == 0
    assert main(["run", "--base", str(tiny_lm), "--adapter", str(adapter), *common,
                 "--out", str(root / "after")]) == 0
    return root


def _json(path):
    return json.loads(path.read_text())


def test_comparison_report_shape(runs):
    out = runs / "cmp"
    report = _json(out / "report.json")
    assert report["kind"] == "comparison" and report["schema_version"] == 2
    assert report["general"] == ["hellaswag"] and report["targets"] == ["cnn_dailymail"]
    acc = report["tasks"]["hellaswag"]["metrics"]["acc"]
    assert set(acc) == {"before", "after", "delta", "ci95", "ci_method", "p_value",
                        "significant", "p_adjusted", "significant_adjusted", "mde",
                        "higher_is_better"}
    assert acc["delta"] == pytest.approx(acc["after"] - acc["before"])
    assert 0 <= acc["p_value"] <= acc["p_adjusted"] <= 1 and acc["mde"] > 0
    assert acc["ci_method"] == "Tango score interval; mid-p McNemar test"
    rouge = report["tasks"]["cnn_dailymail"]["metrics"]["rougeL"]
    assert rouge["ci_method"] == "paired t interval; paired t test"
    words = report["tasks"]["cnn_dailymail"]["metrics"]["gen_words"]
    assert words["p_adjusted"] is None  # descriptive: outside the adjusted family
    assert "ref_words" not in report["tasks"]["cnn_dailymail"]["metrics"]  # data, not model
    assert report["tasks"]["cnn_dailymail"]["reference_words"] > 0
    assert report["settings"]["adjustment"] == "holm"
    assert {f["task"] for f in report["forgetting"]} == {"hellaswag"}
    assert report["before"]["model"]["id"] != report["after"]["model"]["id"]
    assert len(report["tasks"]["cnn_dailymail"]["examples"]) == 3
    md = (out / "report.md").read_text()
    assert md.index("## Forgetting") < md.index("## cnn_dailymail")
    assert "**Forgetting:** hellaswag acc: 16 items could detect a change of ≥" in md
    assert "| Metric | Base | +Adapter | Δ | 95% CI | p | Holm p | MDE |" in md
    assert "Methods: Tango score interval; mid-p McNemar test (Accuracy (%)" in md
    assert (out / "deltas.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "samples" / "before" / "hellaswag.jsonl").exists()
    assert (out / "samples" / "after" / "cnn_dailymail.jsonl").exists()


def test_compare_run_folders_equals_in_process(runs, capsys):
    """Two separately run folders (base; base+adapter) give the same deltas as the in-process
    comparison that switched the adapter off for "before"."""
    out = runs / "offline"
    assert main(["compare", str(runs / "before"), str(runs / "after"), "--general",
                 "hellaswag", "--resamples", "2000", "--out", str(out)]) == 0
    a, b = _json(runs / "cmp" / "report.json"), _json(out / "report.json")
    for task in ("cnn_dailymail", "hellaswag"):
        for metric, m in a["tasks"][task]["metrics"].items():
            other = b["tasks"][task]["metrics"][metric]
            assert other["delta"] == pytest.approx(m["delta"], abs=1e-6), (task, metric)
            assert other["significant"] == m["significant"]


def _err(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_compare_refuses_different_tasks_or_examples(runs, tiny_lm, example_data, tmp_path,
                                                     capsys):
    other = tmp_path / "other"
    assert main(["run", "--base", str(tiny_lm), "--tasks", "hellaswag", "--data",
                 f"hellaswag={example_data['hellaswag']}", "--limit", "10", "--out",
                 str(other)]) == 0
    capsys.readouterr()
    assert main(["compare", str(runs / "before"), str(other), "--out", str(tmp_path / "x")]) == 2
    assert "different tasks (only before: cnn_dailymail)" in _err(capsys)


def test_compare_refuses_different_example_sets(runs, tmp_path, capsys):
    # Same tasks, but the after run's hellaswag samples lose rows: say which differ.
    import shutil

    after = tmp_path / "after"
    shutil.copytree(runs / "after", after)
    path = after / "samples" / "hellaswag.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:10]))
    assert main(["compare", str(runs / "before"), str(after), "--out", str(tmp_path / "x")]) == 2
    line = _err(capsys)
    assert "task 'hellaswag': the runs used different example sets" in line
    assert "6 ids only before" in line


def test_gate_exit_codes(runs, tmp_path, capsys):
    report = runs / "cmp" / "report.json"
    acc = _json(report)["tasks"]["hellaswag"]["metrics"]["acc"]
    lo = acc["ci95"][0]
    # Passes: the CI is not wholly below a threshold under its upper end.
    assert main(["gate", str(report), "--rule", f"hellaswag.acc.delta >= {acc['ci95'][1] - 1e-9}"
                 ]) == 0
    out = capsys.readouterr().out
    assert "PASS  hellaswag.acc.delta" in out and "95% CI" in out
    # Fails: the whole CI lies below the threshold.
    assert main(["gate", str(report), "--rule", f"hellaswag.acc.delta >= {acc['ci95'][1] + 0.01}"
                 ]) == 1
    assert "FAIL  hellaswag.acc.delta" in capsys.readouterr().out
    # --strict: the whole CI must hold.
    assert main(["gate", str(report), "--strict", "--rule",
                 f"hellaswag.acc.delta >= {lo + 1e-6}"]) == 1
    assert main(["gate", str(report), "--strict", "--rule",
                 f"hellaswag.acc.delta >= {lo - 1e-6}"]) == 0
    capsys.readouterr()
    # Rules file and absolute values on a run report.
    rules = tmp_path / "gate.yaml"
    rules.write_text("rules:\n  - 'hellaswag.acc >= 0'\n  - 'cnn_dailymail.rouge1 <= 1'\n")
    assert main(["gate", str(runs / "before"), "--rules", str(rules)]) == 0
    capsys.readouterr()
    # Bad rules and files: exit 2 with one line.
    assert main(["gate", str(report), "--rule", "hellaswag.accc.delta > 0"]) == 2
    assert "unknown metric 'accc'" in _err(capsys)
    assert main(["gate", str(report), "--rule", "hellaswag.acc.delta >> 0"]) == 2
    assert "not of the form" in _err(capsys)
    assert main(["gate", str(tmp_path / "nope.json"), "--rule", "a.b > 0"]) == 2
    assert "no such report" in _err(capsys)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**_json(report), "schema_version": 99}))
    assert main(["gate", str(old), "--rule", "hellaswag.acc.delta > 0"]) == 2
    assert "schema_version 99 is not supported" in _err(capsys)


def test_gate_through_a_real_process(runs):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "harness", "gate",
                           str(runs / "cmp" / "report.json"), "--rule",
                           "hellaswag.acc.delta >= 5"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "FAIL" in proc.stdout


def test_leaderboard(runs, tmp_path, capsys):
    out = tmp_path / "lb"
    assert main(["leaderboard", str(runs / "before"), str(runs / "after"), str(runs / "cmp"),
                 "--sort", "hellaswag.acc", "--out", str(out)]) == 0
    board = _json(out / "leaderboard.json")
    assert board["sort"] == "hellaswag.acc"
    values = [r["scores"].get("hellaswag", {}).get("acc", {}).get("value") for r in board["rows"]]
    present = [v for v in values if v is not None]
    assert present == sorted(present, reverse=True)
    assert (out / "leaderboard.csv").read_text().startswith("rank,label,base,adapter")
    assert "# harness leaderboard" in (out / "leaderboard.md").read_text()
    # the page: one row per board row, the same values, each linked to its run's report.html
    import re
    from html import unescape

    page = (out / "leaderboard.html").read_text()
    links = [unescape(h) for h in re.findall(r'<a href="([^"]+)"', page)]
    assert len(links) == len(board["rows"])
    for link, row in zip(links, board["rows"], strict=True):
        assert (out / link).resolve() == (Path(row["source"]).parent / "report.html").resolve()
    cells = [float(v) if v else None for v in
             re.findall(r'data-key="hellaswag.acc" data-value="([^"]*)"', page)]
    assert cells == values
    capsys.readouterr()
    assert main(["leaderboard", str(runs / "before"), "--sort", "nope.metric", "--out",
                 str(tmp_path / "lb2")]) == 2


def _as_version_1(report: dict) -> dict:
    """A comparison as harness wrote it before schema 2: no ci_method, mde, p_adjusted."""
    old = json.loads(json.dumps(report))
    old["schema_version"] = 1
    del old["settings"]["adjustment"]
    for task in old["tasks"].values():
        for m in task["metrics"].values():
            for key in ("ci_method", "mde", "p_adjusted", "significant_adjusted"):
                m.pop(key)
    return old


def test_gate_reads_mde_p_and_adjusted_significance(runs, tmp_path, capsys):
    report = runs / "cmp" / "report.json"
    data = _json(report)
    acc = data["tasks"]["hellaswag"]["metrics"]["acc"]
    # .mde: a CI job cannot pass by evaluating too few items
    assert main(["gate", str(report), "--rule", f"hellaswag.acc.mde <= {acc['mde'] + 1e-9}"]) == 0
    assert main(["gate", str(report), "--rule", f"hellaswag.acc.mde <= {acc['mde'] - 1e-3}"]) == 1
    assert main(["gate", str(report), "--rule", f"hellaswag.acc.p_adjusted >= "
                 f"{acc['p_adjusted']}", "--rule", f"hellaswag.acc.p <= {acc['p_value']}"]) == 0
    capsys.readouterr()
    # A violation that is significant on its own but not after the adjustment: --significance
    # chooses which one the rule reads.
    cell = data["tasks"]["cnn_dailymail"]["metrics"]["rougeL"]
    cell.update(delta=-0.2, ci95=[-0.3, -0.1], p_value=0.01, significant=True, p_adjusted=0.2,
                significant_adjusted=False)
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    rule = ["--rule", "cnn_dailymail.rougeL.delta >= 0"]
    assert main(["gate", str(edited), *rule]) == 1
    assert main(["gate", str(edited), *rule, "--significance", "adjusted"]) == 0
    cell["significant_adjusted"] = True
    edited.write_text(json.dumps(data))
    assert main(["gate", str(edited), *rule, "--significance", "adjusted"]) == 1


def test_version_1_reports_still_load(runs, tmp_path, capsys):
    """Reports written before schema 2 load in gate and leaderboard; a rule on a field they
    lack is one line naming the version."""
    old = tmp_path / "v1" / "report.json"
    old.parent.mkdir()
    old.write_text(json.dumps(_as_version_1(_json(runs / "cmp" / "report.json"))))
    assert main(["gate", str(old), "--rule", "hellaswag.acc.delta >= -1"]) == 0
    capsys.readouterr()
    assert main(["gate", str(old), "--rule", "hellaswag.acc.mde <= 0.1"]) == 2
    assert "schema_version 1) has no mde" in _err(capsys)
    assert main(["gate", str(old), "--rule", "hellaswag.acc.delta >= -1", "--significance",
                 "adjusted"]) == 2
    assert "schema_version 1) has no adjusted p-values" in _err(capsys)
    assert main(["leaderboard", str(old.parent), str(runs / "before"), "--out",
                 str(tmp_path / "lb")]) == 0
