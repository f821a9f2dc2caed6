"""ROUGE (CPU) and BERTScore (GPU) on 1,000 PubMed-length pairs, against the libraries called
the plain way. python bench/metrics_bench.py [--rouge-workers 2] [--bertscore]"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import DATA, read_jsonl, write_result


def pairs(n: int = 1000) -> tuple[list[str], list[str]]:
    """Prediction: 250 words of an article from an offset; reference: its abstract."""
    rows = [r for r in read_jsonl(DATA / "pubmed_train.jsonl")
            + read_jsonl(DATA / "pubmed_validation.jsonl")
            if len(r["article"].split()) >= 300 and r["abstract"].strip()]
    preds, refs = [], []
    for i in range(n):
        r = rows[i % len(rows)]
        words = r["article"].split()
        start = (i // len(rows)) * 40 % max(len(words) - 250, 1)
        preds.append(" ".join(words[start: start + 250]))
        refs.append(r["abstract"])
    return preds, refs


def rouge_bench(workers: int) -> dict:
    from rouge_score import rouge_scorer

    from harness.metrics.rouge import ROUGE_TYPES, for_rougelsum, rouge

    preds, refs = pairs()
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    t = time.perf_counter()
    plain = [scorer.score(for_rougelsum(r), for_rougelsum(p)) for p, r in zip(preds, refs,
                                                                             strict=True)]
    t_plain = time.perf_counter() - t
    t = time.perf_counter()
    ours = rouge(preds, refs, workers=workers).per_example
    t_ours = time.perf_counter() - t
    identical = all(ours[k][i] == plain[i][k].fmeasure for k in ROUGE_TYPES
                    for i in range(len(preds)))
    return {"pairs": len(preds), "mean_words_pred": 250,
            "mean_words_ref": round(sum(len(r.split()) for r in refs) / len(refs)),
            "rouge_score_single_process_pairs_per_s": round(len(preds) / t_plain, 1),
            f"harness_{workers}_workers_pairs_per_s": round(len(preds) / t_ours, 1),
            "speedup": round(t_plain / t_ours, 2), "identical_scores": identical}


def bertscore_bench() -> dict:
    """A random-weight roberta-large-shaped model (no hub on the GPU machine), layer 17."""
    import torch
    from bert_score import BERTScorer, score
    from common import tokenizer
    from transformers import RobertaConfig, RobertaModel

    folder = Path("/tmp/roberta-large-random")
    tok = tokenizer(Path("/tmp/bench-tok"))
    if not (folder / "config.json").exists():
        cfg = RobertaConfig(vocab_size=len(tok), hidden_size=1024, num_hidden_layers=24,
                            num_attention_heads=16, intermediate_size=4096,
                            max_position_embeddings=514, pad_token_id=tok.pad_token_id)
        RobertaModel(cfg).save_pretrained(folder)
        tok.model_max_length = 510
        tok.save_pretrained(folder)
    preds, refs = pairs()
    from harness.metrics.bertscore import bertscore
    from harness.specs import BertScoreSpec

    torch.cuda.synchronize()
    t = time.perf_counter()
    _, _, f_ref = score(preds, refs, model_type=str(folder), num_layers=17, batch_size=64)
    torch.cuda.synchronize()
    t_ref = time.perf_counter() - t
    spec = BertScoreSpec(model=str(folder), num_layers=17, batch_size=64)
    t = time.perf_counter()
    ours = bertscore(preds, refs, spec).per_example["bertscore_f1"]
    t_first = time.perf_counter() - t
    t = time.perf_counter()
    bertscore(preds, refs, spec)
    t_second = time.perf_counter() - t
    diff = max(abs(a - b) for a, b in zip(ours, f_ref.tolist(), strict=True))
    return {"pairs": len(preds), "bert_score.score_s": round(t_ref, 2),
            "harness_first_call_s": round(t_first, 2),
            "harness_later_calls_s (model loaded once)": round(t_second, 2),
            "max_abs_difference": diff, "BERTScorer": BERTScorer.__name__}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rouge-workers", type=int, default=2)
    ap.add_argument("--bertscore", action="store_true")
    args = ap.parse_args()
    result = {"rouge": rouge_bench(args.rouge_workers)}
    if args.bertscore:
        result["bertscore"] = bertscore_bench()
    write_result("metrics", f"rouge{args.rouge_workers}" + ("_bertscore" if args.bertscore else ""),
                 result)


if __name__ == "__main__":
    main()
