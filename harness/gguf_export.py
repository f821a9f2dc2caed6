"""Write a transformers model folder as a GGUF file with the `gguf` package (pure Python):
`harness export --gguf f16|q8_0|q4_0`.

What it writes, as llama.cpp's converter lays it out:
- metadata: architecture (llama, qwen2, qwen3), context length, widths, block count, head
  counts, RMS-norm epsilon, rope base and dimension, rope scaling (linear as metadata; Llama
  3.1's llama3 as the `rope_freqs` tensor of per-frequency divisors, by llama.cpp's converter's
  formula), file type;
- tensors named by gguf's own name map (`gguf.get_tensor_name_map`); for the llama family the
  Q and K projections permuted into llama.cpp's rope layout; a tied output layer written once
  (as the embedding); 1-D tensors (norms, biases) in F32;
- the tokenizer: every token by id with its type (normal, control, user-defined, unused
  padding), the BPE merges, special token ids and the chat template (`gguf.SpecialVocab`),
  tokenizer model "gpt2" (byte-level BPE) and the pre-tokenizer name llama.cpp knows the
  family by.

Quantisation uses `gguf.quants.quantize`. q8_0 and q4_0 quantise every 2-D weight whose rows
split into 32-value blocks; q4_0 keeps the token embedding and output layer at q8_0, as
llama.cpp's quantiser keeps the output layer at a higher precision. Other tensors are F16.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ModelError, first_line
from harness.paths import file_mode
from harness.report.write import STAGING_PREFIX, remove_stale_staging

OUT_TYPES = ("f16", "q8_0", "q4_0")
ARCHITECTURES = ("llama", "qwen2", "qwen3")


QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}"
               r"\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPLIT = QWEN2_SPLIT.replace(r"|\p{N}|", r"|\p{N}{1,3}|")
PRE_TOKENIZERS = ("gpt-2 (ByteLevel with its regex)", "smollm (digits, then ByteLevel)",
                  "qwen2 and llama-bpe (their split regex, then ByteLevel)")


def pre_tokenizer_name(tokenizer: Any) -> str:
    """The name llama.cpp knows the tokenizer's pre-tokenizer by, from its structure (llama.cpp's
    converter tells them apart by a hash of the tokenizer's output). A structure it does not
    know is refused: llama.cpp would split text otherwise than the model does.
    """
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = json.loads(backend.to_str())["pre_tokenizer"] if backend is not None else None
    spec = spec or {}
    parts = spec.get("pretokenizers", [spec]) if spec.get("type") == "Sequence" else [spec]
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and \
            parts[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not parts[1].get("use_regex", True):
        regex = (parts[0].get("pattern") or {}).get("Regex")
        if regex == QWEN2_SPLIT:
            return "qwen2"
        if regex == LLAMA3_SPLIT:
            return "llama-bpe"
    raise ModelError(f"GGUF export: the tokenizer's pre-tokenizer ({' + '.join(map(str, kinds))}) "
                     f"is not one llama.cpp is known to split alike (written: "
                     f"{'; '.join(PRE_TOKENIZERS)})")


def _rope_theta(config: Any) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    theta = params.get("rope_theta") if isinstance(params, dict) else None
    return float(theta or getattr(config, "rope_theta", None) or 10000.0)


def _rope_scaling(config: Any) -> dict[str, Any] | None:
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None)
    if not isinstance(params, dict):
        return None
    kind = params.get("rope_type") or params.get("type") or "default"
    return None if kind == "default" else {**params, "rope_type": kind}


def llama3_rope_factors(scaling: dict[str, Any], theta: float, head_dim: int) -> np.ndarray:
    """The per-frequency divisors llama.cpp stores as `rope_freqs` for Llama 3.1's "llama3"
    rope scaling, by its converter's formula (convert_hf_to_gguf.py, LlamaModel).
    """
    import math

    freqs = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    factor = float(scaling.get("factor", 8.0))
    low = float(scaling.get("low_freq_factor", 1.0))
    high = float(scaling.get("high_freq_factor", 4.0))
    old = float(scaling.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old / low, old / high
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / float(freq)
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def rope_check(config: Any, gguf_file: Path) -> dict[str, Any] | None:
    """For a model with rope scaling (which transformers' GGUF reader does not restore): the
    file's scaling held against transformers' own rope computation for the source config.
    Returns None for plain rope; raises ModelError where they disagree.
    """
    import gguf
    import torch
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    scaling = _rope_scaling(config)
    if scaling is None:
        return None
    reader = gguf.GGUFReader(gguf_file)
    kind = scaling["rope_type"]
    if kind == "llama3":
        stored = {t.name: t for t in reader.tensors}.get("rope_freqs.weight")
        if stored is None:
            raise ModelError("GGUF export: the file lacks rope_freqs for llama3 rope scaling")
        factors = np.asarray(stored.data, dtype=np.float64)
        plain, _ = ROPE_INIT_FUNCTIONS["linear"](_with_factor(config, 1.0), torch.device("cpu"))
        scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, torch.device("cpu"))
        expected = (plain.double() / scaled.double()).numpy()
        error = float(np.abs(factors - expected).max())
    else:  # linear
        field = reader.fields.get(f"{reader.fields['general.architecture'].contents()}"
                                  f".rope.scaling.factor")
        stored_factor = float(field.contents()) if field is not None else float("nan")
        error = abs(stored_factor - float(scaling["factor"]))
    if not error <= 1e-4:
        raise ModelError(f"GGUF export: the file's {kind} rope scaling differs from "
                         f"transformers' for the source config (max error {error:.3g})")
    return {"rope_scaling": kind, "max_abs_error_vs_transformers": error}


def _with_factor(config: Any, factor: float) -> Any:
    """A copy of config with plain linear rope of `factor` (1.0: unscaled frequencies)."""
    import copy

    plain = copy.deepcopy(config)
    params = dict(_rope_scaling(config) or {})
    params.update(rope_type="linear", factor=factor, rope_theta=_rope_theta(config))
    for key in ("low_freq_factor", "high_freq_factor", "original_max_position_embeddings"):
        params.pop(key, None)
    if getattr(plain, "rope_parameters", None) is not None:
        plain.rope_parameters = params
    else:
        plain.rope_scaling = params
    return plain


def permute_qk(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """HF's rotate-half layout of a Q or K projection to llama.cpp's interleaved rope layout:
    within each head, the two halves of the rotary dimensions are interleaved pairwise.
    """
    heads = n_head_kv if n_head_kv is not None and n_head_kv != n_head else n_head
    shape = weights.shape
    return (weights.reshape(heads, 2, shape[0] // heads // 2, *shape[1:])
            .swapaxes(1, 2).reshape(shape))


def _tokens(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int]]:
    import gguf

    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    added = {tok.content: tok for tok in tokenizer.added_tokens_decoder.values()}
    tokens, types = [], []
    for i in range(vocab_size):
        text = by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif text in added:
            tokens.append(text)
            types.append(gguf.TokenType.CONTROL if added[text].special
                         else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(text)
            types.append(gguf.TokenType.NORMAL)
    return tokens, [int(t) for t in types]


def _tensor_type(name: str, data: np.ndarray, outtype: str) -> Any:
    import gguf

    q = gguf.GGMLQuantizationType
    if data.ndim < 2:
        return q.F32
    if outtype == "f16":
        return q.F16
    block = gguf.GGML_QUANT_SIZES[q.Q8_0][0]
    if data.shape[-1] % block:
        return q.F16
    if outtype == "q4_0" and name not in ("token_embd.weight", "output.weight"):
        return q.Q4_0
    return q.Q8_0


def write_gguf(folder: Path, out_file: Path, outtype: str, name: str) -> dict[str, Any]:
    """Write `folder` (a transformers causal LM) as GGUF at `out_file`; returns a summary."""
    import gguf
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if outtype not in OUT_TYPES:
        raise ModelError(f"--gguf {outtype}: write one of {', '.join(OUT_TYPES)}")
    config = AutoConfig.from_pretrained(folder)
    arch = config.model_type
    if arch not in ARCHITECTURES:
        raise ModelError(f"GGUF export: architecture {arch!r} is not written yet (supported: "
                         f"{', '.join(ARCHITECTURES)})")
    scaling = _rope_scaling(config)
    if scaling and scaling["rope_type"] not in ("linear", "llama3"):
        raise ModelError(f"GGUF export: rope scaling {scaling['rope_type']!r} is not written "
                         f"yet (supported: none, linear, llama3)")
    if scaling and scaling["rope_type"] == "llama3" and arch != "llama":
        raise ModelError(f"GGUF export: llama3 rope scaling on a {arch} model is not written")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    pre = pre_tokenizer_name(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    del model
    arch_id = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2,
               "qwen3": gguf.MODEL_ARCH.QWEN3}[arch]
    n_layers, n_head = config.num_hidden_layers, config.num_attention_heads
    n_head_kv = getattr(config, "num_key_value_heads", None) or n_head
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    tie = bool(getattr(config, "tie_word_embeddings", False))
    vocab_size = int(config.vocab_size)
    file_type = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
                 "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[outtype]

    # named like a report's staging folder, so a killed export's file is removed by the next
    # write into the folder
    remove_stale_staging(out_file.parent)
    fd, tmp = tempfile.mkstemp(dir=out_file.parent, prefix=f"{STAGING_PREFIX}{os.getpid()}-",
                               suffix=".gguf.part")
    os.close(fd)
    writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[arch_id])
    try:
        writer.add_type("model")
        writer.add_name(name)
        writer.add_context_length(int(config.max_position_embeddings))
        writer.add_embedding_length(int(config.hidden_size))
        writer.add_block_count(int(n_layers))
        writer.add_feed_forward_length(int(config.intermediate_size))
        writer.add_head_count(int(n_head))
        writer.add_head_count_kv(int(n_head_kv))
        writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
        writer.add_rope_freq_base(_rope_theta(config))
        writer.add_rope_dimension_count(int(head_dim))
        if arch == "qwen3" or head_dim * n_head != config.hidden_size:
            writer.add_key_length(int(head_dim))
            writer.add_value_length(int(head_dim))
        if scaling and scaling["rope_type"] == "linear":
            writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(float(scaling["factor"]))
        elif scaling:  # llama3: the per-frequency divisors as a tensor, as llama.cpp does
            writer.add_tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight",
                              llama3_rope_factors(scaling, _rope_theta(config), head_dim))
        writer.add_vocab_size(vocab_size)
        writer.add_file_type(file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        tokens, types = _tokens(tokenizer, vocab_size)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        special = gguf.SpecialVocab(str(folder), load_merges=True, n_vocab=vocab_size)
        if not special.merges:
            raise ModelError(f"GGUF export: {folder} has no BPE merges (tokenizer.json); only "
                             f"byte-level BPE tokenizers are written")
        special.add_to_gguf(writer)
        if getattr(tokenizer, "chat_template", None) and "tokenizer.chat_template" \
                not in writer.kv_data[0]:
            writer.add_chat_template(tokenizer.chat_template)

        names = gguf.get_tensor_name_map(arch_id, n_layers)
        counts: dict[str, int] = {}
        for hf_name, data in state.items():
            if hf_name == "lm_head.weight" and tie:
                continue  # the embedding is the output layer
            gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if gguf_name is None:
                raise ModelError(f"GGUF export: no GGUF name for tensor {hf_name!r} of a "
                                 f"{arch} model")
            if arch == "llama" and hf_name.endswith("self_attn.q_proj.weight"):
                data = permute_qk(data, n_head, n_head)
            elif arch == "llama" and hf_name.endswith("self_attn.k_proj.weight"):
                data = permute_qk(data, n_head, n_head_kv)
            qtype = _tensor_type(gguf_name, data, outtype)
            if qtype == gguf.GGMLQuantizationType.F32:
                writer.add_tensor(gguf_name, data.astype(np.float32))
            elif qtype == gguf.GGMLQuantizationType.F16:
                writer.add_tensor(gguf_name, data.astype(np.float16))
            else:
                writer.add_tensor(gguf_name, gguf.quants.quantize(data.astype(np.float32), qtype),
                                  raw_dtype=qtype)
            counts[qtype.name] = counts.get(qtype.name, 0) + 1
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.chmod(tmp, file_mode())
        os.replace(tmp, out_file)
    except ModelError:
        raise
    except Exception as err:
        raise ModelError(f"GGUF export of {folder} failed: {first_line(err)}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return {"file": out_file.name, "type": outtype, "architecture": arch,
            "tensor_types": dict(sorted(counts.items())), "bytes": out_file.stat().st_size,
            "tied_embeddings": tie, "pre_tokenizer": pre}
