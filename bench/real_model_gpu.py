"""A real model on the GPU: SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized) on all HellaSwag
validation rows, through the harness CLI in bf16 and fp32 and through lm-eval's HFLM in bf16
and fp32, in one call. fp32 is the truth for bf16 rounding: the script reports how often each
bf16 run's per-item choices (acc and acc_norm) agree with the fp32 run's, and each run's
acc/acc_norm.

    bash bench/real_model_gpu.sh GGUF_FILE          (on the GPU machine; see RESULTS.md)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402


def harness_run(gguf: Path, data: Path, dtype: str, out: Path) -> tuple[dict, list, float]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "run", "--base", str(gguf), "--tasks",
                    "hellaswag", "--data", f"hellaswag={data}", "--dtype", dtype, "--out",
                    str(out), "--no-cache", "--bootstrap", "100"], check=True)
    seconds = time.perf_counter() - start
    report = json.loads((out / "report.json").read_text())
    samples = [json.loads(x) for x in (out / "samples" / "hellaswag.jsonl").read_text()
               .splitlines()]
    return report, samples, seconds


def hflm_run(folder: Path, data: Path, dtype: str, tmp: Path, device: str,
             batch_size: str) -> tuple[list, dict, float]:
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from harness.lmeval import write_local_hellaswag_task

    task_dir = write_local_hellaswag_task(tmp / f"lm_{dtype}", data, f"hs_{dtype}")
    start = time.perf_counter()
    lm = HFLM(pretrained=str(folder), dtype=dtype, batch_size=batch_size, device=device)
    out = simple_evaluate(model=lm, tasks=[f"hs_{dtype}"], log_samples=True,
                          task_manager=TaskManager(include_path=str(task_dir)),
                          bootstrap_iters=0)
    seconds = time.perf_counter() - start
    del lm
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    samples = sorted(out["samples"][f"hs_{dtype}"], key=lambda s: s["doc_id"])
    choices = []
    for s in samples:
        lls = np.array([float(r[0]) for r in s["filtered_resps"]])
        lengths = np.array([float(len(c)) for c in s["doc"]["choices"]])
        choices.append((int(np.argmax(lls)), int(np.argmax(lls / lengths))))
    return choices, out["results"][f"hs_{dtype}"], seconds


def agree(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> dict[str, float]:
    n = len(a)
    return {"acc_choice": sum(x[0] == y[0] for x, y in zip(a, b, strict=True)) / n,
            "acc_norm_choice": sum(x[1] == y[1] for x, y in zip(a, b, strict=True)) / n}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--gguf", type=Path, required=True)
    p.add_argument("--data", type=Path, default=Path("bench/data/hellaswag_val.jsonl"))
    p.add_argument("--work", type=Path, default=Path("/tmp/real-model"))
    p.add_argument("--limit", type=int, help="the first N rows (a quick check)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--hflm-batch", default="auto", help="HFLM's batch_size (auto: its search)")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(x) for x in args.data.read_text().splitlines() if x.strip()]
    rows = rows[: args.limit] if args.limit else rows
    for r in rows:  # lm-eval's process_docs needs ctx_a/ctx_b; the copy keeps ctx = a + " " + b
        r["ctx_a"], r["ctx_b"] = r["ctx"], ""
    data = args.work / "hellaswag.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    # The first CLI call converts the GGUF into the cache (timed on its own).
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "run", "--base", str(args.gguf),
                    "--tasks", "hellaswag", "--data", f"hellaswag={data}", "--limit", "1",
                    "--out", str(args.work / "warm"), "--no-cache"], check=True)
    convert_s = time.perf_counter() - start
    from harness.models import materialize, resolve_base

    folder = materialize(resolve_base(str(args.gguf))).folder

    result: dict = {"rows": len(rows), "model": "SmolLM2-135M-Instruct Q4_1 GGUF, dequantized",
                    "first_cli_call_with_gguf_conversion_s": round(convert_s, 2), "runs": {}}
    choices = {}
    for dtype in ("float32", "bfloat16"):
        report, samples, secs = harness_run(args.gguf, data, dtype, args.work / f"h_{dtype}")
        m = report["tasks"]["hellaswag"]["metrics"]
        choices[f"harness_{dtype}"] = [(s["prediction"]["choice"], s["prediction"]["choice_norm"])
                                       for s in samples]
        result["runs"][f"harness_{dtype}"] = {"acc": m["acc"]["value"],
                                              "acc_norm": m["acc_norm"]["value"],
                                              "cli_seconds": round(secs, 2)}
    for dtype in ("float32", "bfloat16"):
        ch, res, secs = hflm_run(folder, data, dtype, args.work, args.device, args.hflm_batch)
        choices[f"hflm_{dtype}"] = ch
        result["runs"][f"hflm_{dtype}"] = {"acc": res["acc,none"],
                                           "acc_norm": res["acc_norm,none"],
                                           "seconds_in_process": round(secs, 2)}
    truth = choices["harness_float32"]
    result["agreement_with_harness_fp32"] = {k: agree(v, truth) for k, v in choices.items()}
    result["agreement_hflm_fp32_vs_harness_fp32"] = agree(choices["hflm_float32"], truth)
    fp32 = result["runs"]["harness_float32"]
    result["bf16_minus_fp32_pp"] = {
        k: {"acc": round(100 * (v["acc"] - fp32["acc"]), 3),
            "acc_norm": round(100 * (v["acc_norm"] - fp32["acc_norm"]), 3)}
        for k, v in result["runs"].items() if k.endswith("bfloat16")}
    write_result("real_model_gpu", "smollm2_h200", result)


if __name__ == "__main__":
    main()
