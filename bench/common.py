"""Shared by the benchmarks: data copies, the tokenizer, a random-weight model of a real
architecture (no hub on the GPU machine), timing and memory helpers, the results file."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"          # ignored by git; filled by bench/prepare_data.py
RESULTS = ROOT / "bench" / "results"  # committed: one JSON per benchmark
OUT = Path(os.environ.get("OUT", ROOT / "bench" / "out"))
sys.path.insert(0, str(ROOT))

# BENCH_SMOKE=1: a tiny model on the CPU, to check the scripts run before spending GPU time.
SMOKE = os.environ.get("BENCH_SMOKE") == "1"
DEVICE = "cpu" if SMOKE else "cuda"
TINY = dict(vocab_size=32000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
            max_position_embeddings=4096)

QWEN3_1_7B = dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144,
                  num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                  head_dim=128, tie_word_embeddings=True, max_position_embeddings=40960,
                  rope_theta=1_000_000.0, rms_norm_eps=1e-6)
LLAMA3_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                 num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                 head_dim=128, tie_word_embeddings=False, max_position_embeddings=8192,
                 rope_theta=500_000.0, rms_norm_eps=1e-5)


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    rows = []
    with path.open() as fh:
        for line in fh:
            rows.append(json.loads(line))
            if limit and len(rows) >= limit:
                break
    return rows


def tokenizer(folder: Path):
    """A 32k byte-level BPE trained on the benchmark data (as GPU_NOTES's peer figures used)."""
    from harness.tiny import build_tokenizer

    if (folder / "tokenizer.json").exists():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder)
    texts = []
    for name in ("hellaswag.jsonl", "cnn_dailymail.jsonl", "pubmed_train.jsonl"):
        for r in read_jsonl(DATA / name):
            texts.append(" ".join(str(v) for v in r.values() if isinstance(v, str)))
    tok = build_tokenizer(texts, folder, vocab_size=32000)
    tok.model_max_length = 40960
    tok.save_pretrained(folder)
    return tok


def model(arch: dict, kind: str = "qwen3", dtype: str = "bfloat16", device: str = DEVICE):
    import torch

    if SMOKE:
        arch, dtype = TINY, "float32"
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    cfg_cls, model_cls = (Qwen3Config, Qwen3ForCausalLM) if kind == "qwen3" else \
        (LlamaConfig, LlamaForCausalLM)
    cfg = cfg_cls(**arch, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    with torch.device(device):
        m = model_cls(cfg).to(getattr(torch, dtype))
    return m.eval()


def save_model(m, tok, folder: Path) -> Path:
    if not (folder / "config.json").exists():
        m.save_pretrained(folder)
        tok.save_pretrained(folder)
    return folder


class Timer:
    def __enter__(self):
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
            self.peak_gib = torch.cuda.max_memory_allocated() / 2**30
        else:
            self.peak_gib = 0.0
        self.seconds = time.perf_counter() - self.t


def graph_ms(fn, reps: int = 10) -> float:
    """Milliseconds per replay of `fn`'s launches captured as one CUDA graph (after one
    warm-up run on a side stream): the kernels' time without Python or launch gaps."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def versions() -> dict:
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for lib in ("torch", "transformers", "peft", "bitsandbytes", "lm-eval", "rouge-score",
                "bert-score", "accelerate"):
        try:
            out[lib] = md.version(lib)
        except md.PackageNotFoundError:
            out[lib] = None
    try:
        import torch

        out["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        out["gpu"] = None
    return out


def write_result(bench: str, config: str, result: dict) -> None:
    """One results file per benchmark, bench/results/BENCH.json: {"benchmark", "configs":
    {CONFIG: result}}. A run replaces its own configuration's entry and keeps the others (read
    from OUT's copy if this process wrote one, else from the committed file), so the file that
    comes back from the GPU machine is whole."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{bench}.json"
    base = path if path.exists() else RESULTS / f"{bench}.json"
    data = json.loads(base.read_text()) if base.exists() else {"benchmark": bench,
                                                               "configs": {}}
    data["configs"][config] = {"measured": time.strftime("%Y-%m-%d"), "versions": versions(),
                               **result}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(json.dumps(data["configs"][config], indent=2, sort_keys=True), flush=True)


def table(rows: list[dict], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)
