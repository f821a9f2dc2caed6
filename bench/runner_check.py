"""Why `harness run` scores HellaSwag slower than the engine bench (RESULTS.md §2d): the same
10,042 rows through the CLI's loader (a model read back from disk) in one call, in the
runner's chunks of 2,048, in chunks with the garbage collector off, and through the bench's
in-memory model. python bench/runner_check.py (GPU; BENCH_SMOKE=1 on CPU)"""

from __future__ import annotations

import os
import time
from pathlib import Path

from common import DATA, DEVICE, QWEN3_1_7B, model, save_model, tokenizer, write_result


def main() -> None:
    import torch

    from harness.data import load_task_data
    from harness.engine import Engine
    from harness.kinds import multiple_choice
    from harness.models import load_model
    from harness.progress import Progress
    from harness.registry import discover_tasks
    from harness.specs import ModelSpec

    if DEVICE == "cpu":  # smoke test: no CUDA calls
        torch.cuda.synchronize = torch.cuda.empty_cache = lambda: None
    tok = tokenizer(Path("/tmp/bench-tok"))
    folder = save_model(model(QWEN3_1_7B), tok, Path("/tmp/qwen3-random"))
    torch.cuda.empty_cache()
    task = discover_tasks()["hellaswag"]
    data = load_task_data(task, str(DATA / "hellaswag_all.parquet"),
                          300 if DEVICE == "cpu" else None)
    out = {}

    def timed(label, m, t, examples, chunk=None):
        eng = Engine(m, t, DEVICE, 4096)
        torch.cuda.synchronize()
        start = time.perf_counter()
        if chunk:
            for i in range(0, len(examples), chunk):
                multiple_choice.run(task, examples[i: i + chunk], eng, Progress(False), "hs")
        else:
            multiple_choice.run(task, examples, eng, Progress(False), "hs")
        torch.cuda.synchronize()
        out[label] = {"seconds": round(time.perf_counter() - start, 2),
                      "fused": eng.fused_kernels,
                      "flash_segments": eng._flash_choices_ok(m.model),
                      "attn": m.config._attn_implementation,
                      "dtype": str(next(m.parameters()).dtype)}
        print(label, out[label], flush=True)

    loaded = load_model(ModelSpec(base=str(folder), dtype="bfloat16", device=DEVICE))
    ex = data.examples
    timed("cli loader, first call, 2,000", loaded.model, loaded.tokenizer, ex[:2000])
    timed("cli loader, 10,042 in one call", loaded.model, loaded.tokenizer, ex)
    timed("cli loader, 10,042 in chunks of 2,048", loaded.model, loaded.tokenizer, ex, 2048)
    import gc

    gc.disable()  # does the cyclic collector's pausing of the main thread matter?
    timed("cli loader, 10,042 in chunks, gc off", loaded.model, loaded.tokenizer, ex, 2048)
    gc.enable()
    del loaded
    torch.cuda.empty_cache()
    m = model(QWEN3_1_7B)
    timed("bench model, 10,042 in one call", m, tok, ex)
    write_result("runner_check", out)


if __name__ == "__main__":
    os.environ.setdefault("HARNESS_NO_PROGRESS", "1")
    main()
