"""How far one model's next-token distributions are from another's, over a set of texts: the
statistics llama.cpp's `llama-perplexity --kl-divergence` reports. The first model is the
reference P (the base, "before"), the second Q (the candidate, "after").

Figures:

- kld_mean and kld_p99: KL(P || Q) per predicted token, mean and 99th percentile;
- same_top_token: the share of positions where both models' most likely next token agree;
- ppl_before, ppl_after and ppl_ratio (after / before) over the texts' own next tokens.

Both models are held at once and must share a tokenizer (the same ids for the same text).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import DataError, ModelError
from harness.prompts import PromptBuilder, encode
from harness.report.write import strict_loads

MAX_TEXT_TOKENS = 512
DEFAULT_MAX_TOKENS = 16_384
PROBE = "The quick brown fox jumps over the lazy dog. 12345 — naïve café, 東京."


def read_texts(path: Path) -> list[str]:
    """--text FILE: JSON lines with a "text" field, or plain text (one text per paragraph,
    paragraphs separated by a blank line).
    """
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"--text {path}: no such file") from None
    except UnicodeDecodeError:
        raise DataError(f"--text {path}: not UTF-8 text") from None
    except OSError as err:
        raise DataError(f"--text {path}: cannot read it ({err.strerror or err})") from None
    texts: list[str] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for lineno, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = strict_loads(line)
            except (ValueError, RecursionError):
                raise DataError(f"--text {path}: line {lineno} is not JSON") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise DataError(f"--text {path}: line {lineno} has no \"text\" string")
            texts.append(row["text"])
    else:
        texts = [p.strip() for p in raw.split("\n\n") if p.strip()]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise DataError(f"--text {path}: no texts in the file")
    return texts


def task_texts(tasks: Sequence[Any], datasets: dict[str, Any], tokenizer: Any) -> list[str]:
    """The default text set: every task's prompts as the model sees them, followed by the
    reference for generation tasks.
    """
    texts = []
    for task in tasks:
        builder = PromptBuilder(task, tokenizer)
        for ex in datasets[task.name].examples:
            text = builder.text(ex.fields)
            if task.kind == "generation" and task.target:
                text += str(ex.fields.get(task.target, ""))
            texts.append(text)
    return texts


def check_same_tokenizer(tok_a: Any, tok_b: Any, names: tuple[str, str]) -> None:
    """The same token for every id both have, and the same ids for a probe text. Tokens past
    the shorter one are allowed only as added special tokens (transformers' GGUF reader adds
    <|endoftext|> to a Qwen-family vocabulary that lacks it) or a GGUF file's padding.
    """
    vocab_a, vocab_b = tok_a.get_vocab(), tok_b.get_vocab()
    shared = min(len(vocab_a), len(vocab_b))
    longer, vocab_long = (tok_a, vocab_a) if len(vocab_a) > len(vocab_b) else (tok_b, vocab_b)
    added = {str(t) for t in getattr(longer, "added_tokens_decoder", {}).values()}
    # llama.cpp's converter (and the harness's) pads a vocabulary to the embedding's rows with
    # unused "[PAD<id>]" tokens, which read back as real tokens
    added |= {f"[PAD{i}]" for i in range(shared, len(vocab_long))}
    same = ({k: v for k, v in vocab_a.items() if v < shared}
            == {k: v for k, v in vocab_b.items() if v < shared})
    extras_added = all(k in added for k, v in vocab_long.items() if v >= shared)
    if not (same and extras_added) or encode(tok_a, PROBE) != encode(tok_b, PROBE):
        raise ModelError(f"{names[0]} and {names[1]} do not share a tokenizer ({len(tok_a)} vs "
                         f"{len(tok_b)} tokens, or different ids for the same text); "
                         f"divergence needs the same vocabulary")


def measure(model_a: Any, model_b: Any, tokenizer: Any, texts: Sequence[str],
            max_tokens: int = DEFAULT_MAX_TOKENS) -> dict[str, Any]:
    """The statistics over up to max_tokens predicted tokens (texts cut to 512 tokens)."""
    import torch

    kld: list[np.ndarray] = []
    same = nll_a = nll_b = 0.0
    count = used = 0
    for text in texts:
        if count >= max_tokens:
            break
        ids = encode(tokenizer, text)[:MAX_TEXT_TOKENS]
        if len(ids) < 2:
            continue
        used += 1
        with torch.no_grad():
            logp = []
            for model in (model_a, model_b):
                x = torch.tensor([ids], device=model.device)
                logp.append(torch.log_softmax(model(input_ids=x).logits[0, :-1].float(), -1)
                            .cpu())
        pa, pb = logp
        target = torch.tensor(ids[1:])
        kld.append((pa.exp() * (pa - pb)).sum(-1).clamp_min(0).numpy())
        same += float((pa.argmax(-1) == pb.argmax(-1)).sum())
        nll_a -= float(pa.gather(1, target[:, None]).sum())
        nll_b -= float(pb.gather(1, target[:, None]).sum())
        count += len(ids) - 1
    if count == 0:
        raise DataError("divergence: no text of two tokens or more to measure on")
    per_token = np.concatenate(kld)
    ppl_a, ppl_b = float(np.exp(nll_a / count)), float(np.exp(nll_b / count))
    return {"texts": used, "tokens": count,
            "kld_mean": round(float(per_token.mean()), 12),
            "kld_p99": round(float(np.percentile(per_token, 99)), 12),
            "kld_max": round(float(per_token.max()), 12),
            "same_top_token": round(same / count, 12),
            "ppl_before": round(ppl_a, 12), "ppl_after": round(ppl_b, 12),
            "ppl_ratio": round(ppl_b / ppl_a, 12)}
