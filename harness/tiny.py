"""Build a tiny random causal LM and a tokenizer trained on the fly, fully offline.

Used by `harness demo` and the tests: a byte-level BPE (so any text, real data included,
tokenizes as a real model's would) and a Llama-architecture model with random weights.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
# A minimal chat template, so tasks with `chat_template: auto` take their chat path too.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_tokenizer(corpus: Iterable[str], out: Path, vocab_size: int = 1024,
                    chat_template: bool = False) -> Any:  # PreTrainedTokenizerFast
    """Train a byte-level BPE on `corpus`, save it to `out`; it prepends BOS like Llama's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS,
                                   pad_token=PAD, unk_token=UNK, model_max_length=1024)
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return fast


def build_model(out: Path, vocab_size: int, seed: int = 0, hidden: int = 64, layers: int = 2,
                heads: int = 4, kv_heads: int = 2, max_positions: int = 1024) -> None:
    """A random Llama-architecture model saved as safetensors in `out`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions, bos_token_id=1, eos_token_id=2, pad_token_id=0,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    # Larger random logits than the default init, so choices and greedy tokens are not near-ties.
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, 0.5)
    model.save_pretrained(out)


def build_tiny_lm(out: Path, corpus: Iterable[str], seed: int = 0, vocab_size: int = 1024,
                  chat_template: bool = False, max_positions: int = 1024) -> Path:
    """Tokenizer + model in one folder that `--base` accepts."""
    tok = build_tokenizer(corpus, out, vocab_size=vocab_size, chat_template=chat_template)
    tok.model_max_length = max_positions
    tok.save_pretrained(out)
    build_model(out, vocab_size=len(tok), seed=seed, max_positions=max_positions)
    return out
