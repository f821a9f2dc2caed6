"""Seed 003's deployment path on the GPU machine, each step a whole CLI command, timed: a
random-weight Qwen3-1.7B (bf16, the bench tokenizer) exported to GGUF q8_0 and q4_0 with
`harness export --base … --gguf`, then `harness compare --base MODEL --candidate FILE` on
CNN/DailyMail (ROUGE) and HellaSwag, with the divergence section. Writes deploy.json.

    bash bench/deploy_gpu.sh        (carry .whl and bench/data)
    BENCH_SMOKE=1 python bench/deploy_bench.py --prompts 4 --items 20    (a CPU check)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import DATA, OUT, QWEN3_1_7B, ROOT, SMOKE, model, save_model, tokenizer, write_result

from harness.gguf_export import QWEN2_SPLIT


def qwen_tokenizer(folder: Path):
    """The bench tokenizer made Qwen-like: the family's pre-tokenizer (digits one by one),
    which a qwen3 GGUF file declares, and no BOS. The export refuses a tokenizer whose
    read-back splits otherwise (transformers 5.17 on the GPU machine dropped the BOS this
    tokenizer's template adds, read back from a 1.7B qwen3 file)."""
    from transformers import AutoTokenizer

    if not (folder / "tokenizer.json").exists():
        tokenizer(folder)
        spec = json.loads((folder / "tokenizer.json").read_text())
        spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
             "use_regex": False}]}
        spec["post_processor"] = None  # no BOS, as Qwen's own tokenizer
        (folder / "tokenizer.json").write_text(json.dumps(spec))
    return AutoTokenizer.from_pretrained(folder)


def _timed(label: str, args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    print(f"{label}: {seconds:.1f} s (exit {done.returncode})", flush=True)
    if done.returncode != 0:
        print(done.stderr[-4000:], flush=True)
        raise SystemExit(f"{label} failed")
    return seconds


def export_part(args: argparse.Namespace, work: Path, env: dict[str, str],
                steps: dict[str, float]) -> None:
    """The model and its GGUF exports, timed."""
    started = time.perf_counter()
    source = save_model(model(QWEN3_1_7B), qwen_tokenizer(work / "tok"), work / "qwen3-random")
    steps["build and save the random model (bf16)"] = time.perf_counter() - started
    tasks = work / "tasks"
    tasks.mkdir(exist_ok=True)
    cnn = (ROOT / "harness/tasks/cnn_dailymail.yaml").read_text()
    (tasks / "cnn_rouge.yaml").write_text(
        cnn.replace("name: cnn_dailymail", "name: cnn_rouge", 1)
        .replace("metrics: [rouge, bertscore, words]", "metrics: [rouge, words]"))
    for path, src, n in ((work / "cnn.jsonl", DATA / "cnn_dailymail.jsonl", args.prompts),
                         (work / "hellaswag.jsonl", DATA / "hellaswag.jsonl", args.items)):
        path.write_text("".join(src.read_text().splitlines(keepends=True)[:n]))
    for kind in ("q8_0", "q4_0"):
        steps[f"harness export --gguf {kind}"] = _timed(
            f"export {kind}", ["export", "--base", str(source), "--gguf", kind, "--out",
                               str(work / "exports")], env)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--prompts", type=int, default=128, help="CNN/DailyMail prompts")
    p.add_argument("--items", type=int, default=1000, help="HellaSwag items")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--work", type=Path, default=Path("/tmp/deploy-bench"))
    p.add_argument("--part", choices=["all", "export", "compare"], default="all",
                   help="export: build and export only; compare: reuse --work's exports (two "
                        "device calls, each under its time limit)")
    args = p.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HARNESS_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1",
           "HARNESS_NO_PROGRESS": "1"}
    timing = work / "steps.json"
    steps: dict[str, float] = json.loads(timing.read_text()) if args.part == "compare" else {}
    if args.part != "compare":
        export_part(args, work, env, steps)
        timing.write_text(json.dumps(steps))
    if args.part == "export":
        return
    exports = work / "exports"
    record = json.loads((exports / "export.json").read_text())["gguf"]
    results = {}
    for kind in ("q8_0", "q4_0"):
        out = OUT / f"deploy-compare-{kind}"
        steps[f"harness compare --candidate {kind}.gguf"] = _timed(
            f"compare {kind}", [
                "compare", "--base", str(work / "qwen3-random"), "--candidate",
                str(exports / record[kind]["file"]), "--tasks-dir", str(work / "tasks"),
                "--tasks", "cnn_rouge", "hellaswag", "--general", "hellaswag",
                "--data", f"cnn_rouge={work / 'cnn.jsonl'}",
                "--data", f"hellaswag={work / 'hellaswag.jsonl'}",
                "--max-new-tokens", str(args.new_tokens), "--out", str(out)], env)
        report = json.loads((out / "report.json").read_text())
        results[kind] = {
            "file_mib": round(record[kind]["bytes"] / 2**20, 1),
            "export_check": {k: record[kind]["check"][k]
                             for k in ("kld_mean", "kld_p99", "same_top_token", "ppl_ratio")},
            "export_seconds": record[kind]["seconds"],
            "divergence": {k: report["divergence"][k]
                           for k in ("kld_mean", "kld_p99", "kld_max", "same_top_token",
                                     "ppl_ratio", "tokens")},
            "tasks": {task: {metric: {k: cell.get(k) for k in
                                      ("before", "after", "delta", "ci95", "p_value")}
                             for metric, cell in block["metrics"].items()}
                      for task, block in report["tasks"].items()},
        }
    config = "tiny_smoke" if SMOKE else "qwen3_1.7b"
    write_result("deploy", config, {"model": "random-weight Qwen3-1.7B (bf16)" if not SMOKE
                                    else "tiny",
                            "prompts": args.prompts, "items": args.items,
                            "new_tokens": args.new_tokens,
                            "seconds": {k: round(v, 1) for k, v in steps.items()},
                            "results": results})


if __name__ == "__main__":
    main()
