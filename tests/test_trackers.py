"""--log-to tensorboard|mlflow|wandb on train, run and compare, read back through each
library's own reader: tensorboard's EventAccumulator, mlflow.search_runs and load_table on the
local store, wandb's DataStore over the offline run file. Missing packages and failing
trackers end in one line."""

import contextlib
import json
import math
import os
import subprocess
import sys

import pytest
from tests_helpers import compare_args, write_recipe

from harness import examples
from harness.cli import main
from harness.track import report as track_report

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")
pytest.importorskip("wandb")

ALL = ["--log-to", "tensorboard", "--log-to", "mlflow", "--log-to", "wandb"]


@pytest.fixture(autouse=True, scope="module")
def offline_trackers():
    """Local stores only: nothing of the user's tracker settings leaks into the tests."""
    saved = {k: os.environ.pop(k) for k in list(os.environ)
             if k.startswith(("MLFLOW_", "WANDB_"))}
    os.environ["WANDB_MODE"] = "offline"
    yield
    for k in [k for k in os.environ if k.startswith(("MLFLOW_", "WANDB_"))]:
        del os.environ[k]
    os.environ.update(saved)


@pytest.fixture(scope="module")
def tracked(tiny_lm, adapter, example_data, minilm, tmp_path_factory):
    """A base run, an adapter run, and their comparison from the two folders, all logged."""
    root = tmp_path_factory.mktemp("tracked")
    common = compare_args(example_data, minilm)
    assert main(["run", "--base", str(tiny_lm), *common, "--out", str(root / "before")]) == 0
    assert main(["run", "--base", str(tiny_lm), "--adapter", str(adapter), *common, *ALL,
                 "--out", str(root / "after")]) == 0
    assert main(["compare", str(root / "before"), str(root / "after"), "--general",
                 "hellaswag", "--resamples", "500", *ALL, "--out", str(root / "cmp")]) == 0
    return root


def _report(folder):
    return json.loads((folder / "report.json").read_text())


def _tb_scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run,) = (folder / "tensorboard").iterdir()  # one folder per run
    acc = EventAccumulator(str(run))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
            for tag in acc.Tags()["scalars"]}


@contextlib.contextmanager
def _mlflow_store(folder):
    """The fluent API pointed at a folder's local store; MLflow exports the URI to the
    environment, so it is restored afterwards (later commands must not log there)."""
    import mlflow

    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    try:
        yield mlflow
    finally:
        mlflow.set_tracking_uri(None)
        for k in [k for k in os.environ if k.startswith("MLFLOW_")]:
            del os.environ[k]
        os.environ.update(saved)


def _mlflow_run(folder):
    with _mlflow_store(folder) as mlflow:
        runs = mlflow.search_runs(experiment_names=["harness"])
    assert len(runs) == 1
    return runs.iloc[0]


def _wandb_records(folder):
    from wandb.proto import wandb_internal_pb2 as pb
    from wandb.sdk.internal import datastore

    (path,) = (folder / "wandb").glob("offline-run-*/run-*.wandb")
    store = datastore.DataStore()
    store.open_for_scan(str(path))
    records = []
    while (data := store.scan_data()) is not None:
        rec = pb.Record()
        rec.ParseFromString(data)
        records.append(rec)
    return records


def _wandb_values(records, kind):
    """history rows (a list of dicts) or the summary (one dict) of an offline run file."""
    rows = []
    for rec in records:
        if rec.WhichOneof("record_type") != kind:
            continue
        items = rec.history.item if kind == "history" else rec.summary.update
        rows.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in items})
    if kind == "summary":
        merged = {}
        for row in rows:
            merged.update(row)
        return merged
    return rows


def _comparison_expectations(report):
    """Every figure the comparison's trackers must hold, from report.json itself."""
    expected = {}
    for task, block in report["tasks"].items():
        for metric, m in block["metrics"].items():
            for field in ("before", "after", "delta", "p_value"):
                if m.get(field) is not None:
                    expected[f"{task}/{metric}/{field}"] = m[field]
            expected[f"{task}/{metric}/ci_low"] = m["ci95"][0]
            expected[f"{task}/{metric}/ci_high"] = m["ci95"][1]
    return expected


def test_comparison_metrics_in_all_three(tracked):
    folder = tracked / "cmp"
    expected = _comparison_expectations(_report(folder))
    assert "hellaswag/acc/delta" in expected and "cnn_dailymail/rougeL/ci_low" in expected
    tb = _tb_scalars(folder)
    run = _mlflow_run(folder)
    summary = _wandb_values(_wandb_records(folder), "summary")
    for key, value in expected.items():
        assert tb[key][-1][1] == pytest.approx(value, rel=1e-6, abs=1e-7), key  # float32
        assert run[f"metrics.{key}"] == pytest.approx(value, rel=1e-12), key
        assert summary[key] == pytest.approx(value, rel=1e-12), key
    assert run["params.kind"] == "comparison" and run["status"] == "FINISHED"
    assert run["tags.mlflow.runName"] == "cmp"


def test_samples_tables_match_the_samples(tracked):
    """The multiple-choice table's choices and flips equal samples/, in MLflow and in W&B."""
    folder = tracked / "cmp"
    report = _report(folder)
    b_label, a_label = report["before"]["label"], report["after"]["label"]
    before = [json.loads(x) for x in (folder / "samples/before/hellaswag.jsonl").open()]
    after = {r["id"]: r for r in map(json.loads, (folder / "samples/after/hellaswag.jsonl")
                                     .open())}
    flips = sorted(str(b["id"]) for b in before
                   if (b["prediction"]["choice"] == b["reference"])
                   != (after[b["id"]]["prediction"]["choice"] == b["reference"]))
    run = _mlflow_run(folder)
    with _mlflow_store(folder) as mlflow:
        mlflow.set_experiment("harness")  # load_table looks in the active experiment
        table = mlflow.load_table("samples/hellaswag.json", run_ids=[run["run_id"]])
    assert len(table) == len(before)
    table["right_b"] = table[b_label] == table["reference"]
    table["right_a"] = table[a_label] == table["reference"]
    assert sorted(table[table.right_b != table.right_a]["id"].astype(str)) == flips
    assert list(table["input"])[0] == before[0]["input"]["prompt"]
    (wandb_file,) = (folder / "wandb").glob("offline-run-*/files/media/table/"
                                            "samples/hellaswag_*.table.json")
    wt = json.loads(wandb_file.read_text())
    cols = wt["columns"]
    got = sorted(str(r[0]) for r in wt["data"]
                 if (r[cols.index(b_label)] == r[cols.index("reference")])
                 != (r[cols.index(a_label)] == r[cols.index("reference")]))
    assert got == flips and len(wt["data"]) == len(before)


def test_run_metrics_with_ci_bounds(tracked):
    folder = tracked / "after"
    report = _report(folder)
    expected = track_report.report_metrics(report)
    acc = report["tasks"]["hellaswag"]["metrics"]["acc"]
    assert expected["hellaswag/acc/value"] == acc["value"]
    assert (expected["hellaswag/acc/ci_low"], expected["hellaswag/acc/ci_high"]) == \
        tuple(acc["ci95"])
    run = _mlflow_run(folder)
    tb = _tb_scalars(folder)
    summary = _wandb_values(_wandb_records(folder), "summary")
    for key, value in expected.items():
        assert run[f"metrics.{key}"] == pytest.approx(value, rel=1e-12), key
        assert tb[key][-1][1] == pytest.approx(value, rel=1e-6, abs=1e-7), key
        assert summary[key] == pytest.approx(value, rel=1e-12), key
    label = report["label"]
    assert run[f"params.models.{label}.adapter.path"] == report["model"]["adapter"]["path"]
    assert run["params.settings.seed"] == str(report["settings"]["seed"])


def test_training_log_in_all_three(tiny_lm, tmp_path):
    rows = examples.news(40)
    train = examples.write_jsonl(rows[:32], tmp_path / "train.jsonl")
    evals = examples.write_jsonl(rows[32:], tmp_path / "eval.jsonl")
    recipe = write_recipe(tmp_path, tiny_lm, steps=6)
    out = tmp_path / "adapter"
    assert main(["train", str(recipe), "--data", f"cnn_dailymail={train}", "--data",
                 f"cnn_dailymail:eval={evals}", "--set", "training.eval_every=3", "--set",
                 "training.log_every=2", "--out", str(out), *ALL]) == 0
    log = [json.loads(x) for x in (out / "train_log.jsonl").open()]
    expected = {(f"train/{k}", r["step"]): v for r in log for k, v in r.items()
                if k != "step" and isinstance(v, (int, float))}
    names = {k for k, _ in expected}
    assert {"train/loss", "train/eval_loss", "train/lr", "train/grad_norm",
            "train/tokens_per_s"} <= names
    tb = _tb_scalars(out)
    import mlflow

    run = _mlflow_run(out)
    client = mlflow.MlflowClient(f"sqlite:///{out / 'mlflow.db'}")  # its own URI: no env
    history = [r for r in _wandb_values(_wandb_records(out), "history") if "_step" in r]
    for name in names:
        want = sorted((step, v) for (k, step), v in expected.items() if k == name)
        got_tb = [(s, v) for s, v in tb[name] if s in dict(want)]
        assert [s for s, _ in got_tb] == [s for s, _ in want], name
        assert [v for _, v in got_tb] == pytest.approx([v for _, v in want], rel=1e-6)
        got_ml = sorted((m.step, m.value) for m in client.get_metric_history(run["run_id"], name))
        got_ml = [m for m in got_ml if m[0] in dict(want)]
        got_wb = sorted((r["_step"], r[name]) for r in history if name in r)
        for got in (got_ml, got_wb):
            assert [s for s, _ in got] == [s for s, _ in want], name
            assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-12)
    summary = json.loads((out / "train_summary.json").read_text())
    assert run["metrics.train/best_eval_loss"] == pytest.approx(summary["best_eval_loss"])
    assert run["params.training.learning_rate"] == "0.003"


def _cli(args, cwd, env_extra=None, block=None):
    """harness in a subprocess; `block` names a module made unimportable first."""
    prelude = f"import sys; sys.modules[{block!r}] = None; " if block else "import sys; "
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", prelude + "from harness.cli import main; "
                           "sys.exit(main(sys.argv[1:]))", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("name,module", [("tensorboard", "tensorboard"),
                                         ("mlflow", "mlflow"), ("wandb", "wandb")])
def test_missing_package_is_one_line_before_any_work(tracked, tmp_path, name, module):
    out = tmp_path / "out"
    proc = _cli(["compare", str(tracked / "before"), str(tracked / "after"), "--log-to", name,
                 "--out", str(out)], tmp_path, block=module)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pip install 'harness[{name}]'" in lines[0], lines
    assert not out.exists()  # nothing was computed or written


def test_unknown_tracker_is_refused(capsys, tmp_path):
    assert main(["compare", "a", "b", "--log-to", "neptune", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neptune" in err[0] and "tensorboard" in err[0]


def test_tracker_failing_mid_log_keeps_the_report(tracked, tmp_path, capsys, monkeypatch):
    from harness.track.mlflow import MlflowTracker

    def broken(self, values, step):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(MlflowTracker, "metrics", broken)
    out = tmp_path / "cmp"
    assert main(["compare", str(tracked / "before"), str(tracked / "after"), "--log-to",
                 "mlflow", "--log-to", "tensorboard", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --log-to mlflow failed (OSError") and str(out) in err[-1]
    assert _report(out)["kind"] == "comparison"  # the results are kept
    assert _tb_scalars(out)["hellaswag/acc/delta"]  # the other tracker still logged
    assert _mlflow_run(out)["status"] == "FAILED"


def test_nothing_outside_out(tracked, tmp_path):
    """wandb and MLflow keep their files (run, cache, database, artifacts) inside --out."""
    home, cwd, out = tmp_path / "home", tmp_path / "cwd", tmp_path / "out"
    home.mkdir()
    cwd.mkdir()
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
           "XDG_CONFIG_HOME": str(home / ".config"), "WANDB_MODE": "",  # "": as unset
           "MPLCONFIGDIR": str(tmp_path / "mpl")}  # matplotlib's font cache: not a tracker's
    proc = _cli(["compare", str(tracked / "before"), str(tracked / "after"), *ALL, "--out",
                 str(out)], cwd, {**env, "HARNESS_CACHE": str(out / "cache")})
    assert proc.returncode == 0, proc.stderr
    assert list(cwd.iterdir()) == []
    leaked = list(home.rglob("*"))  # files and folders
    assert leaked == [], leaked
    assert (out / "mlflow.db").exists() and list((out / "wandb").glob("offline-run-*"))
    assert not math.isnan(_mlflow_run(out)["metrics.hellaswag/acc/delta"])


def test_two_runs_into_one_local_mlflow_store_at_once(tracked, tmp_path):
    """The first run creates the local store (tables, experiment); a second started at the same
    moment waits for it (a lock on --out) instead of failing on "table already exists"."""
    out = tmp_path / "same"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    procs = [subprocess.Popen([sys.executable, "-m", "harness", "compare",
                               str(tracked / "before"), str(tracked / "after"), "--log-to",
                               "mlflow", "--out", str(out)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    with _mlflow_store(out) as mlflow:
        runs = mlflow.search_runs(experiment_names=["harness"])
    assert sorted(runs["status"]) == ["FINISHED", "FINISHED"]


def test_a_tracker_that_cannot_start_leaves_nothing(tracked, tmp_path, capsys, monkeypatch):
    """MLflow failing to open its store (a full disk) after TensorBoard opened: one line, exit
    2, and the TensorBoard folder it had just made is gone with the --out it created; an
    existing one stays."""
    from harness.track.mlflow import MlflowTracker

    def full(self, ctx):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(MlflowTracker, "__init__", full)
    args = ["compare", str(tracked / "before"), str(tracked / "after"), "--log-to",
            "tensorboard", "--log-to", "mlflow", "--out"]
    assert main([*args, str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--log-to mlflow: cannot start a run (OSError" in err[0]
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    (kept / "tensorboard" / "earlier").mkdir(parents=True)
    assert main([*args, str(kept)]) == 2
    assert (kept / "tensorboard" / "earlier").exists()  # what was there before stays
