"""`harness export ADAPTER --merge --out DIR`: merge a LoRA adapter into its base and write a
standard transformers folder (safetensors weights, config, generation config, tokenizer) that
plain `AutoModelForCausalLM.from_pretrained` loads.

The base is the one the adapter names: `--base`, else the `base:` of the harness recipe saved
beside the adapter (recipe.resolved.yaml), else the adapter config's
`base_model_name_or_path`. A GGUF base is read through its dequantized copy. An adapter
trained on a 4-bit base (QLoRA) is merged into the base loaded in 16 or 32 bits: the standard
practice, and said so on stderr and in export.json. The merge runs in float32, and the merged
model's log-probabilities on a probe text are checked against the un-merged base + adapter's
before anything is written; the weights are then cast to --dtype (what that rounding changes
on the probe is recorded, not judged).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import __version__, yamlio
from harness.errors import ConfigError, ModelError, NotFoundError, first_line
from harness.fingerprint import hash_files
from harness.models import (
    PROBE_TEXT,
    adapter_config,
    load_tokenizer,
    materialize,
    resolve_base,
)
from harness.paths import dir_mode, file_mode, folder_lock, inside
from harness.report.write import STAGING_PREFIX, dumps, remove_stale_staging

DTYPES = ("auto", "float32", "float16", "bfloat16")
TOLERANCE = 1e-3  # max |log-prob| difference, merged vs un-merged, both in float32


@dataclass(frozen=True)
class ExportSpec:
    """What `harness export` writes: from an adapter (or a base alone), into `out`."""

    adapter: Path | None
    out: Path
    base: str | None = None
    dtype: str = "auto"
    trust_remote_code: bool = False
    gguf: str | None = None  # f16 | q8_0 | q4_0


# The written GGUF, read back through transformers, against the model it came from: mean KLD
# per token above which the file is refused (set from measurement; q4_0 is reported only).
GGUF_KLD_LIMIT = {"f16": 1e-3, "q8_0": 1e-2}
CHECK_TOKENS = 2048


def _recipe(adapter: Path) -> dict[str, Any]:
    path = adapter / "recipe.resolved.yaml"
    if not path.is_file():
        return {}
    data = yamlio.load_file(path, "recipe.resolved.yaml")
    return data if isinstance(data, dict) else {}


def adapter_base(adapter: Path, cfg: dict[str, Any], given: str | None) -> str:
    """The base to merge into: --base, the recipe's base, or the adapter config's."""
    if given:
        return given
    recipe_base = _recipe(adapter).get("base")
    if isinstance(recipe_base, str) and recipe_base.strip():
        return recipe_base
    named = cfg.get("base_model_name_or_path")
    if isinstance(named, str) and named.strip():
        return named
    raise ConfigError(f"{adapter}: the adapter does not name its base model; give --base")


def _dtype_name(requested: str, config: Any) -> str:
    if requested != "auto":
        return requested
    stored = str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "")
    stored = stored.replace("torch.", "")
    return stored if stored in ("float16", "bfloat16") else "float32"


def _probe_logprobs(model: Any, tokenizer: Any) -> Any:
    import torch

    ids = tokenizer(PROBE_TEXT, return_tensors="pt").input_ids.to(model.device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    return torch.log_softmax(logits, dim=-1)


def _move_in(stage: Path, out: Path) -> list[str]:
    """Move the staged files into out, export.json last (replacing files of the same name)."""
    names = sorted((p.name for p in stage.iterdir()), key=lambda n: n == "export.json")
    for name in names:
        target = inside(out, out / name)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(stage / name, target)
    return names


def export_merged(spec: ExportSpec) -> dict[str, Any]:
    """Merge, check, write; returns what export.json holds."""
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM

    assert spec.adapter is not None
    adapter = spec.adapter.expanduser()
    if not adapter.is_dir():
        raise NotFoundError(f"{spec.adapter}: no such adapter folder")
    if not (adapter / "adapter_config.json").exists():
        raise ModelError(f"{spec.adapter}: no adapter_config.json in the folder; give a PEFT "
                         f"adapter saved with save_pretrained")
    cfg = adapter_config(adapter, str(spec.adapter))
    if cfg.get("peft_type") != "LORA":
        raise ModelError(f"{spec.adapter}: a {cfg.get('peft_type')} adapter; --merge merges "
                         f"LoRA adapters")
    base_name = adapter_base(adapter, cfg, spec.base)
    source = materialize(resolve_base(base_name))
    quantized = str(_recipe(adapter).get("quantization", "none")).lower()
    try:
        config = AutoConfig.from_pretrained(source.path, trust_remote_code=spec.trust_remote_code,
                                            **source.load_kwargs)
    except Exception as err:
        raise ModelError(f"cannot read the config of base {base_name}: {first_line(err)}") \
            from None
    dtype = _dtype_name(spec.dtype, config)
    if quantized not in ("none", ""):
        print(f"the adapter was trained on a 4-bit ({quantized}) base (QLoRA): merging it into "
              f"the base loaded in {dtype}, the standard practice; the merged model is close "
              f"to, not identical with, the 4-bit base + adapter", file=sys.stderr)
    tokenizer = load_tokenizer(base_name, trust_remote_code=spec.trust_remote_code,
                               source=source)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source.path, dtype=torch.float32, trust_remote_code=spec.trust_remote_code,
            **source.load_kwargs)
    except Exception as err:
        raise ModelError(f"cannot load base {base_name}: {first_line(err)}") from None
    model.eval()
    try:
        peft_model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    except Exception as err:
        if "size mismatch" in str(err) or "shape" in str(err).lower():
            raise ModelError(f"{spec.adapter} does not fit base {base_name} (weight shapes "
                             f"differ: was it trained on another base model?)") from None
        raise ModelError(f"{spec.adapter} cannot be attached to {base_name}: "
                         f"{first_line(err)}") from None
    unmerged = _probe_logprobs(peft_model, tokenizer)
    merged = peft_model.merge_and_unload()
    after = _probe_logprobs(merged, tokenizer)
    max_delta = float((after - unmerged).abs().max())
    if not max_delta <= TOLERANCE:
        raise ModelError(f"the merged model's log-probs differ from base + adapter by "
                         f"{max_delta:.3g} on the probe (tolerance {TOLERANCE} in float32); "
                         f"the merge is not trustworthy for this model")
    rounding = 0.0
    if dtype != "float32":
        merged = merged.to(getattr(torch, dtype))
        rounding = float((_probe_logprobs(merged, tokenizer) - after).abs().max())
    summary = {
        "harness_version": __version__, "kind": "merged_adapter",
        "base": base_name, "base_format": "gguf" if source.gguf_path else "transformers",
        "adapter": str(adapter.resolve()),
        "adapter_weights_sha256": hash_files(adapter, [p.name for p in adapter.iterdir()
                                                      if p.name.startswith("adapter_model")]),
        "adapter_trained_quantization": quantized or "none",
        "dtype": dtype, "peft_type": cfg.get("peft_type"), "r": cfg.get("r"),
        "merge_check": {"probe_tokens": int(unmerged.shape[1]),
                        "max_abs_logprob_delta": max_delta, "tolerance": TOLERANCE,
                        "in": "float32",
                        "max_abs_logprob_delta_after_cast": rounding},
    }
    out = spec.out
    remove_stale_staging(out)
    stage = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out))
    try:
        os.chmod(stage, dir_mode())
        merged.save_pretrained(stage, safe_serialization=True)
        tokenizer.save_pretrained(stage)
        (stage / "export.json").write_text(dumps(summary), encoding="utf-8")
        _move_in(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return summary


def describe(summary: dict[str, Any], out: Path) -> str:
    """The one-line summary of a merge export and its check."""
    check = summary["merge_check"]
    cast = "" if summary["dtype"] == "float32" else (
        f"; saved in {summary['dtype']}, which moves them by up to "
        f"{check['max_abs_logprob_delta_after_cast']:.2g}")
    return (f"wrote {out}: {summary['base']} + {summary['adapter']} merged (safetensors, "
            f"config, tokenizer; loads with AutoModelForCausalLM.from_pretrained); merged vs "
            f"un-merged log-probs in float32 on a {check['probe_tokens']}-token probe: max |Δ| "
            f"{check['max_abs_logprob_delta']:.2g}{cast}")


def describe_gguf(summary: dict[str, Any], out: Path) -> str:
    """The one-line summary of a GGUF export and its read-back check."""
    check = summary["check"]
    return (f"wrote {out / summary['file']}: GGUF {summary['type']} "
            f"({summary['bytes'] / 2**20:.1f} MiB); read back through transformers, against "
            f"the model it came from over {check['tokens']} tokens: mean KLD "
            f"{check['kld_mean']:.3g}, 99th pct {check['kld_p99']:.3g}, same top token "
            f"{100 * check['same_top_token']:.1f}%, PPL ratio {check['ppl_ratio']:.4f} "
            f"(written in {summary['seconds']['write']:.1f} s, checked in "
            f"{summary['seconds']['read_back_and_check']:.1f} s)")


def read_export(out: Path) -> dict[str, Any]:
    """An export folder's export.json."""
    return json.loads((out / "export.json").read_text(encoding="utf-8"))


def _check_texts() -> list[str]:
    """Project-written text for the read-back check: news articles and everyday scenes."""
    from harness import examples

    texts = [r["article"] for r in examples.news_varied(6)]
    texts += [f"{r['ctx']} {r['endings'][int(r['label'])]}" for r in
              examples.commonsense_items()[:40]]
    return [PROBE_TEXT, *texts]


def _check_tokenizer(tokenizer: Any, out: Path, name: str) -> None:
    """The file's tokenizer, read back by transformers, must split text as the model's does:
    the pre-tokenizer is named by family, and a model whose tokenizer is not its family's
    (digits, spaces and scripts split differently) would be served other token ids.
    """
    from transformers import AutoTokenizer

    from harness.divergence import PROBE
    from harness.prompts import encode

    try:
        back = AutoTokenizer.from_pretrained(out, gguf_file=name)
    except Exception as err:
        raise ModelError(f"transformers cannot read the tokenizer of the GGUF file just "
                         f"written: {first_line(err)}") from None
    for text in [PROBE, *_check_texts()]:
        ours, theirs = encode(tokenizer, text), encode(back, text)
        if ours != theirs:
            at = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False))
                       if a != b),
                      min(len(ours), len(theirs)))
            raise ModelError(f"the GGUF file's tokenizer, read back, splits text differently "
                             f"from the model's (in {text[:30]!r}…, from token {at}: "
                             f"{ours[at:at + 4]} vs {theirs[at:at + 4]}): its pre-tokenizer "
                             f"or special tokens are not its family's; not kept")


def export_gguf(spec: ExportSpec) -> dict[str, Any]:
    """Write spec.out/NAME-TYPE.gguf from the merged folder just written (an adapter) or from
    --base, read it back through transformers and check it against the source model.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness import divergence
    from harness.gguf_base import load_gguf_model
    from harness.gguf_export import rope_check, write_gguf

    assert spec.gguf is not None
    out = spec.out
    if spec.adapter is not None:
        folder, label = out, out.resolve().name
    else:
        source = materialize(resolve_base(str(spec.base)))
        if source.folder is None:
            raise ConfigError(f"--base {spec.base}: GGUF export reads a local folder; download "
                              f"the model first (huggingface-cli download) and give its folder")
        folder, label = source.folder, Path(str(spec.base).rstrip("/")).name.removesuffix(
            ".gguf")
    name = f"{label}-{spec.gguf}.gguf".replace(" ", "_")
    target = inside(out, out / name)
    started = time.perf_counter()
    written = write_gguf(folder, target, spec.gguf, label)
    wrote = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        # float32 both; on the GPU where there is one (a 1.7B model's check is minutes on CPU)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        reference.to(device)
        try:
            back = load_gguf_model(target, dtype=torch.float32).eval().to(device)
        except Exception as err:
            raise ModelError(f"transformers cannot read the GGUF file just written: "
                             f"{first_line(err)}") from None
        _check_tokenizer(tokenizer, out, name)
        rope = rope_check(reference.config, target)
        if rope is not None:
            # transformers' GGUF reader does not restore rope scaling: the file's scaling is
            # checked above against transformers' rope for the source config, and the weights
            # are compared under the source's rotary embedding
            back.model.rotary_emb = reference.model.rotary_emb
        check = divergence.measure(reference, back, tokenizer, _check_texts(), CHECK_TOKENS)
        limit = GGUF_KLD_LIMIT.get(spec.gguf)
        if limit is not None and not check["kld_mean"] <= limit:
            raise ModelError(f"the {spec.gguf} GGUF file, read back, differs from the model "
                             f"(mean KLD {check['kld_mean']:.3g} > {limit}); not kept")
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    summary = {**written, "check": {**check, "kld_mean_limit": limit,
                                    "read_back": "transformers (gguf_file=, dequantized)"}}
    if rope is not None:
        summary["check"]["rope"] = rope
    summary["seconds"] = {"write": round(wrote - started, 2),
                          "read_back_and_check": round(time.perf_counter() - wrote, 2)}
    _add_to_record(out, spec, summary)
    return summary


def _add_to_record(out: Path, spec: ExportSpec, summary: dict[str, Any]) -> None:
    """export.json gains this file's entry: read, changed and replaced under a lock on the
    folder, so two exports into one --out at once both keep theirs.
    """
    with folder_lock(out):
        record = read_export(out) if (out / "export.json").exists() else {
            "harness_version": __version__, "kind": "gguf", "base": spec.base}
        record.setdefault("gguf", {})[str(spec.gguf)] = summary
        with tempfile.NamedTemporaryFile("w", dir=out, prefix=f"{STAGING_PREFIX}{os.getpid()}-",
                                         suffix=".json", delete=False, encoding="utf-8") as fh:
            fh.write(dumps(record))
        os.chmod(fh.name, file_mode())
        os.replace(fh.name, out / "export.json")
