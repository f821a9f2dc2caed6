"""--seeds K for sampled generation: K runs per sampling task, intervals clustered by example
(per-example values averaged over seeds, then the interval over examples), the variance split
into between-example and between-seed parts; greedy tasks run once."""

import json

import numpy as np
import pytest
from scipy import stats as sps

from harness import seeds
from harness.cli import main
from harness.metrics import CorpusMetric, Scores


@pytest.fixture()
def sampled_task(tmp_path):
    """medquad's prompt, sampled at temperature 1, scored with ROUGE and BLEU."""
    from harness.registry import discover_tasks

    spec = discover_tasks()["medquad"]
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "med_sampled.yaml").write_text(json.dumps({
        "name": "med_sampled", "kind": "generation",
        "dataset": {"hub": spec.dataset.hub, "split": spec.dataset.split},
        "fields": dict(spec.fields), "prompt": spec.prompt, "target": "answer",
        "generation": {"max_new_tokens": 8, "do_sample": True, "temperature": 1.0, "seed": 5},
        "metrics": ["rouge", "bleu"]}))
    return folder


def _json(path):
    return json.loads(path.read_text())


def test_run_with_seeds_clusters_by_example(tiny_lm, example_data, sampled_task, tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--base", str(tiny_lm), "--tasks", "med_sampled", "--tasks-dir",
                 str(sampled_task), "--data", f"med_sampled={example_data['medquad']}",
                 "--limit", "6", "--seeds", "3", "--no-cache", "--out", str(out)]) == 0
    task = _json(out / "report.json")["tasks"]["med_sampled"]
    assert task["n"] == 6 and task["seeds"]["k"] == 3 and task["seeds"]["seeds"] == [5, 6, 7]
    records = [json.loads(x) for x in (out / "samples" / "med_sampled.jsonl").open()]
    assert len(records) == 18 and {r["seed"] for r in records} == {5, 6, 7}
    assert len({(r["id"], r["prediction"]) for r in records}) > 6  # the seeds sample apart
    by_id: dict[str, list[float]] = {}
    for r in records:
        by_id.setdefault(r["id"], []).append(r["metrics"]["rougeL"])
    means = np.array([np.mean(v) for v in by_id.values()])
    rouge = task["metrics"]["rougeL"]
    assert rouge["value"] == pytest.approx(means.mean(), abs=1e-12) and rouge["n"] == 6
    ci = sps.ttest_1samp(means, 0).confidence_interval(0.95)
    assert rouge["ci95"] == pytest.approx([ci.low, ci.high], abs=1e-9)
    within = np.mean([np.var(v, ddof=1) for v in by_id.values()])
    assert task["seeds"]["variance"]["rougeL"]["between_seeds"] == pytest.approx(within)
    assert "Sampled with 3 seeds (5, 6, 7)" in (out / "report.md").read_text()


def test_compare_with_seeds_pairs_example_means(tiny_lm, adapter, example_data, sampled_task,
                                                tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--base", str(tiny_lm), "--adapter", str(adapter), "--tasks",
                 "med_sampled", "--tasks-dir", str(sampled_task), "--data",
                 f"med_sampled={example_data['medquad']}", "--limit", "6", "--seeds", "2",
                 "--no-cache", "--out", str(out)]) == 0
    report = _json(out / "report.json")
    task = report["tasks"]["med_sampled"]
    assert task["n"] == 6 and task["seeds"]["k"] == 2

    def means(side):
        recs = [json.loads(x) for x in (out / "samples" / side / "med_sampled.jsonl").open()]
        assert len(recs) == 12
        by_id: dict[str, list[float]] = {}
        for r in recs:
            by_id.setdefault(r["id"], []).append(r["metrics"]["rougeL"])
        return np.array([np.mean(v) for v in by_id.values()])

    b, a = means("before"), means("after")
    m = task["metrics"]["rougeL"]
    assert m["delta"] == pytest.approx(float(np.mean(a - b)), abs=1e-12)
    if np.std(a - b) > 0:
        ci = sps.ttest_rel(a, b).confidence_interval(0.95)
        assert m["ci95"] == pytest.approx([ci.low, ci.high], abs=1e-9)
    assert "Sampled with 2 seeds per model" in (out / "report.md").read_text()


def test_greedy_tasks_run_once(tiny_lm, example_data, tmp_path):
    out = tmp_path / "greedy"
    assert main(["run", "--base", str(tiny_lm), "--tasks", "hellaswag", "--data",
                 f"hellaswag={example_data['hellaswag']}", "--limit", "5", "--seeds", "4",
                 "--no-cache", "--out", str(out)]) == 0
    task = _json(out / "report.json")["tasks"]["hellaswag"]
    assert task["n"] == 5 and "seeds" not in task
    assert main(["run", "--base", str(tiny_lm), "--tasks", "hellaswag", "--seeds", "0",
                 "--out", str(tmp_path / "x")]) == 2


def test_variance_components_recover_known_values():
    """One-way random effects: example effects with variance 0.04, seed noise 0.01."""
    rng = np.random.default_rng(0)
    n, k = 4000, 5
    effect = rng.normal(0.5, 0.2, n)
    values = (effect[:, None] + rng.normal(0, 0.1, (n, k))).ravel()
    records = [{"id": str(i // k), "seed": i % k} for i in range(n * k)]
    bleu = CorpusMetric(np.ones((n * k, 2)), lambda s: s[0] / s[1])
    scores = Scores({"x": list(values)}, {"bleu": bleu})
    v = seeds.variance(records, scores)["x"]
    assert v["between_examples"] == pytest.approx(0.04, rel=0.06)
    assert v["between_seeds"] == pytest.approx(0.01, rel=0.03)
    clustered = seeds.cluster(records, scores)
    assert len(clustered.per_example["x"]) == n
    assert clustered.corpus["bleu"].stats.shape == (n, 2)
    assert float(clustered.corpus["bleu"].stats[0, 0]) == k
