"""HellaSwag parity: our acc, acc_norm and every per-item choice equal lm-eval's HFLM."""

import json
from pathlib import Path

import pytest

from harness import examples
from harness.registry import discover_tasks
from harness.runner import evaluate
from harness.specs import ModelSpec, RunSpec

N_ITEMS = 200


def _lm_eval_samples(model_dir: Path, data: Path, tmp: Path) -> dict[int, dict]:
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.lmeval import write_local_hellaswag_task

    # lm-eval's own preprocessing is the reference: the task imports it, nothing is copied.
    task_dir = write_local_hellaswag_task(tmp / "lm_eval_tasks", data, "hellaswag_local")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(model_dir)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=16)
    out = simple_evaluate(model=lm, tasks=["hellaswag_local"], log_samples=True,
                          task_manager=TaskManager(include_path=str(task_dir)))
    samples = out["samples"]["hellaswag_local"]
    return {s["doc_id"]: s for s in samples}, out["results"]["hellaswag_local"]


@pytest.mark.parametrize("source", ["hub_format", "real_rows"])
def test_hellaswag_matches_lm_eval_per_item(source, plain_lm, tmp_path):
    data = tmp_path / "hellaswag.jsonl"
    if source == "hub_format":
        # Project-written rows in the hub's format (ctx_a/ctx_b, WikiHow markup, "  ").
        examples.write_jsonl(examples.hellaswag_items(N_ITEMS), data)
    else:
        from conftest import shared_file

        real = shared_file("hellaswag", "hellaswag_val.jsonl")
        rows = [json.loads(line) for line in real.open()][:N_ITEMS]
        # lm-eval's process_docs needs ctx_a/ctx_b; the copy has ctx = ctx_a + " " + ctx_b.
        for r in rows:
            r["ctx_a"], r["ctx_b"] = r["ctx"], ""
        examples.write_jsonl(rows, data)

    theirs, their_results = _lm_eval_samples(plain_lm, data, tmp_path)
    spec = RunSpec(model=ModelSpec(base=str(plain_lm), device="cpu", dtype="float32"),
                   tasks=("hellaswag",), data=(("hellaswag", str(data)),), batch_size=None)
    report, samples = evaluate(spec, discover_tasks())
    ours = samples["base"]["hellaswag"]
    assert len(ours) == len(theirs) == N_ITEMS

    for rec in ours:
        ref = theirs[int(rec["id"])]
        their_lls = [float(r[0]) for r in ref["filtered_resps"]]
        assert rec["prediction"]["loglikelihoods"] == pytest.approx(their_lls, rel=1e-6, abs=1e-4)
        assert rec["metrics"]["acc"] == ref["acc"], rec["id"]
        assert rec["metrics"]["acc_norm"] == ref["acc_norm"], rec["id"]
        assert rec["prediction"]["is_greedy"] == [bool(r[1]) for r in ref["filtered_resps"]]

    metrics = report["tasks"]["hellaswag"]["metrics"]
    assert metrics["acc"]["value"] == pytest.approx(their_results["acc,none"], abs=1e-12)
    assert metrics["acc_norm"]["value"] == pytest.approx(their_results["acc_norm,none"],
                                                         abs=1e-12)
    # lm-eval's stderr is the sample standard error of the mean, like ours.
    assert metrics["acc"]["stderr"] == pytest.approx(their_results["acc_stderr,none"], rel=1e-6)
