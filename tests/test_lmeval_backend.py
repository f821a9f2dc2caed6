"""`--backend lm-eval`: the harness's tasks with every model call made by lm-eval's HFLM. The
same token ids go to both backends, so their records must agree: the same choices and
log-likelihoods (to float rounding), the same greedy texts; and a second backend must not be
served the first one's stored records."""

import json

import pytest

from harness.cli import main


def _samples(folder, task):
    return [json.loads(x) for x in (folder / "samples" / f"{task}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def both(tiny_lm, adapter, example_data, tmp_path_factory):
    """The same run (base and base + adapter; multiple choice, and generation with the
    reference's perplexity) through each backend, into one result store."""
    from harness import examples

    root = tmp_path_factory.mktemp("backends")
    rows = [{"question": r["question"], "answer": r["answer"],
             "context": "From the handbook." if i % 2 else ""}
            for i, r in enumerate(examples.medical_qa(12))]
    qa = examples.write_jsonl(rows, root / "qa.jsonl")
    store = root / "store"
    outs = {}
    for backend in ("hf", "lm-eval"):
        out = root / backend
        assert main(["run", "--base", str(tiny_lm), "--adapter", str(adapter),
                     "--include-base", "--tasks", "hellaswag,research_qa",
                     "--data", f"hellaswag={example_data['hellaswag']}",
                     "--data", f"research_qa={qa}",
                     "--limit", "12", "--max-new-tokens", "12", "--batch-size", "4",
                     "--backend", backend, "--cache-dir", str(store), "--out", str(out)]) == 0
        outs[backend] = out
    return outs


def test_backends_give_the_same_records(both):
    hf, lm = both["hf"], both["lm-eval"]
    report_hf = json.loads((hf / "report.json").read_text())
    report_lm = json.loads((lm / "report.json").read_text())
    assert report_lm["settings"]["backend"] == "lm-eval"
    assert report_hf["settings"]["backend"] == "hf"
    assert "model calls by lm-eval" in (lm / "report.md").read_text()
    assert "model calls by" not in (hf / "report.md").read_text()
    for run_hf, run_lm in zip(report_hf["runs"], report_lm["runs"], strict=True):
        label = run_hf["label"]
        assert run_lm["engine"]["decode_mode"] == "lm-eval HFLM generate"
        # Nothing from the store: the backend is part of the store key.
        for task in run_lm["tasks"].values():
            assert task["timings"]["examples_from_store"] == 0
        mc_hf = _samples(hf, f"{label}/hellaswag")
        mc_lm = _samples(lm, f"{label}/hellaswag")
        assert len(mc_hf) == len(mc_lm) == 12
        for a, b in zip(mc_hf, mc_lm, strict=True):
            assert a["prediction"]["choice"] == b["prediction"]["choice"]
            assert a["prediction"]["choice_norm"] == b["prediction"]["choice_norm"]
            assert a["prediction"]["loglikelihoods"] == pytest.approx(
                b["prediction"]["loglikelihoods"], abs=1e-3)
        gen_hf = _samples(hf, f"{label}/research_qa")
        gen_lm = _samples(lm, f"{label}/research_qa")
        assert [r["prediction"] for r in gen_hf] == [r["prediction"] for r in gen_lm]
        assert [r["new_tokens"] for r in gen_hf] == [r["new_tokens"] for r in gen_lm]
        for a, b in zip(gen_hf, gen_lm, strict=True):  # perplexity: log-likelihoods again
            assert a["target_nll"]["n_tokens"] == b["target_nll"]["n_tokens"]
            assert a["target_nll"]["nll"] == pytest.approx(b["target_nll"]["nll"], abs=1e-3)
        assert run_hf["tasks"]["hellaswag"]["metrics"]["acc"]["value"] == \
            run_lm["tasks"]["hellaswag"]["metrics"]["acc"]["value"]


def test_unknown_backend_is_one_line(tiny_lm, tmp_path, capsys):
    assert main(["run", "--base", str(tiny_lm), "--tasks", "hellaswag", "--backend", "vllm",
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--backend" in err and "invalid choice" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_compare_records_the_backend(tiny_lm, adapter, example_data, tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--base", str(tiny_lm), "--adapter", str(adapter), "--tasks",
                 "hellaswag", "--data", f"hellaswag={example_data['hellaswag']}", "--limit",
                 "8", "--backend", "lm-eval", "--no-cache", "--resamples", "200",
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["backend"] == "lm-eval"
    assert "Model calls by lm-eval (--backend lm-eval)." in (out / "report.md").read_text()
    runs = json.loads((out / "runs.json").read_text())
    assert runs["settings"]["backend"] == "lm-eval"
    # Multiple choice only: nothing generated, so no decode mode (as with the engine).
    assert {r["engine"]["decode_mode"] for r in runs["runs"]} == {None}
