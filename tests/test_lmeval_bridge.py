"""lm-eval tasks as forgetting probes: `--tasks lm_eval:NAME` on the loaded model."""

import json

import pytest

from harness import examples
from harness.cli import main


@pytest.fixture(scope="module")
def lm_eval_dir(tmp_path_factory):
    """A local lm-eval task (HellaSwag's own preprocessing) over project-written rows."""
    from harness.lmeval import write_local_hellaswag_task

    d = tmp_path_factory.mktemp("lm_eval_tasks")
    data = examples.write_jsonl(examples.hellaswag_items(30), d / "rows.jsonl")
    write_local_hellaswag_task(d, data, "hs_local")
    return d, data


def test_lm_eval_task_in_run_report(tiny_lm, lm_eval_dir, tmp_path):
    d, data = lm_eval_dir
    out = tmp_path / "run"
    assert main(["run", "--base", str(tiny_lm), "--tasks", "lm_eval:hs_local,hellaswag",
                 "--data", f"hellaswag={data}", "--lm-eval-include", str(d), "--allow-code",
                 "--batch-size",
                 "8", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    report = json.loads((out / "report.json").read_text())
    theirs = report["tasks"]["lm_eval:hs_local"]
    assert theirs["kind"] == "lm_eval" and theirs["n"] == 30
    assert set(theirs["metrics"]) == {"acc", "acc_norm"}
    lm = theirs["metric_config"]["lm_eval"]["results"]
    assert theirs["metrics"]["acc"]["value"] == pytest.approx(lm["acc,none"], abs=1e-12)
    assert theirs["metrics"]["acc"]["stderr"] > 0   # lm-eval ran with bootstrap_iters=0: ours
    # The same rows through lm-eval and through our native task give the same accuracies.
    ours = report["tasks"]["hellaswag"]["metrics"]
    assert ours["acc"]["value"] == theirs["metrics"]["acc"]["value"]
    assert ours["acc_norm"]["value"] == theirs["metrics"]["acc_norm"]["value"]
    assert (out / "samples" / "lm_eval:hs_local.jsonl").exists()
    # Run again: served from the store, same numbers.
    again = tmp_path / "again"
    assert main(["run", "--base", str(tiny_lm), "--tasks", "lm_eval:hs_local",
                 "--lm-eval-include", str(d), "--allow-code", "--out", str(again), "--cache-dir",
                 str(tmp_path / "cache")]) == 0
    second = json.loads((again / "report.json").read_text())["tasks"]["lm_eval:hs_local"]
    assert second["timings"]["examples_from_store"] == 30
    assert second["metrics"] == theirs["metrics"]


def test_lm_eval_task_as_forgetting_probe(tiny_lm, adapter, lm_eval_dir, example_data,
                                          tmp_path, capsys):
    d, _ = lm_eval_dir
    out = tmp_path / "cmp"
    assert main(["compare", "--base", str(tiny_lm), "--adapter", str(adapter), "--tasks",
                 "hellaswag", "--data", f"hellaswag={example_data['hellaswag']}",
                 "--general", "lm_eval:hs_local", "--lm-eval-include", str(d), "--allow-code",
                 "--batch-size",
                 "8", "--resamples", "500", "--out", str(out), "--no-cache"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["general"] == ["lm_eval:hs_local"]
    acc = report["tasks"]["lm_eval:hs_local"]["metrics"]["acc"]
    assert acc["delta"] == pytest.approx(acc["after"] - acc["before"])
    assert acc["p_value"] is not None
    assert "**Forgetting:** lm_eval:hs_local acc" in (out / "report.md").read_text()
    capsys.readouterr()
    assert main(["gate", str(out / "report.json"), "--rule",
                 "lm_eval:hs_local.acc.delta >= -1"]) == 0


def test_unknown_lm_eval_task(tiny_lm, tmp_path, capsys):
    assert main(["run", "--base", str(tiny_lm), "--tasks", "lm_eval:arc_eazy", "--out",
                 str(tmp_path / "o"), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert "lm-eval knows no task 'arc_eazy'" in err and "lm_eval:arc_easy" in err


def test_damaged_lm_eval_index_is_recomputed(tiny_lm, lm_eval_dir, tmp_path):
    """The store's "__index__" row of an lm-eval task, damaged: the task runs again (same
    figures), no traceback."""
    import sqlite3

    d, _ = lm_eval_dir
    args = ["run", "--base", str(tiny_lm), "--tasks", "lm_eval:hs_local", "--lm-eval-include",
            str(d), "--allow-code", "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    db = sqlite3.connect(tmp_path / "cache" / "results.sqlite")
    with db:
        assert db.execute("UPDATE results SET record = ? WHERE example_hash = '__index__'",
                          ('{"example_hash": "__index__"}',)).rowcount == 1
    db.close()
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    first, again = (json.loads((tmp_path / o / "report.json").read_text())["tasks"]
                    ["lm_eval:hs_local"] for o in ("a", "b"))
    assert again["timings"]["examples_computed"] == 30
    assert again["metrics"] == first["metrics"]
