"""The default GPU paths (fused kernels, flash segments, packed prompt pass, CUDA graph) on a
model placed on a GPU that is not the current device (--device cuda:1), against the same on
cuda:0. Run on a 2-GPU machine: python bench/device_check.py"""

from __future__ import annotations

from pathlib import Path

from common import QWEN3_1_7B, model, tokenizer, write_result
from generation_bench import prompts_for
from gpu_checks import hellaswag_groups


def main() -> None:
    from harness.engine import Engine
    from harness.progress import Progress
    from harness.specs import GenerationSpec

    tok = tokenizer(Path("/tmp/bench-tok"))
    groups = hellaswag_groups(tok, 300)
    prompts = [p[-400:] for p in prompts_for(tok, 32)]
    out = {}
    for dev in ("cuda:0", "cuda:1"):
        m = model(QWEN3_1_7B, device=dev)
        eng = Engine(m, tok, dev, 4096)
        mc = eng.loglikelihood_choices(groups, Progress(False), "mc")
        texts = eng.generate(prompts, GenerationSpec(max_new_tokens=32), Progress(False), "g")
        out[dev] = ([r.logprob for x in mc for r in x], texts, eng.fused_kernels,
                    eng.decode_mode)
        del m, eng
    a, b = out["cuda:0"], out["cuda:1"]
    write_result("device_check", {
        "fused_on_cuda1": b[2], "decode_mode_cuda0": a[3], "decode_mode_cuda1": b[3],
        "loglikelihoods_equal": sum(x == y for x, y in zip(a[0], b[0], strict=True)),
        "of": len(a[0]),
        "texts_equal": f"{sum(x == y for x, y in zip(a[1], b[1], strict=True))}/{len(a[1])}"})


if __name__ == "__main__":
    main()
