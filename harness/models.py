"""Load a base model (hub id or folder; optionally 4/8-bit) with PEFT adapters, switchable.

The base is loaded once; each adapter is attached un-merged under its own name and evaluated
in turn, the base alone through `disable_adapter()` — the quantized base the adapter was
trained on, not a second copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, ModelError, NotFoundError
from harness.errors import first_line as _first_line
from harness.fingerprint import (
    CONFIG_FILES,
    TOKENIZER_FILES,
    WEIGHT_SUFFIXES,
    fingerprint_id,
    hash_files,
)
from harness.paths import safe_label
from harness.specs import ModelSpec


@dataclass
class Variant:
    """One thing to evaluate: the base alone or base + one adapter."""

    label: str
    adapter_name: str | None
    fingerprint: dict[str, Any]


@dataclass
class LoadedModel:
    """A base model loaded once with its tokenizer and the variants (base, adapters) to run."""

    model: Any
    tokenizer: Any
    device: str
    dtype: str
    max_length: int
    variants: list[Variant] = field(default_factory=list)
    load_seconds: float = 0.0  # load_model's wall time (weights, adapters, fingerprints)

    @contextlib.contextmanager
    def use(self, variant: Variant) -> Iterator[None]:
        """Make `variant` the active model for the duration of the block."""
        if variant.adapter_name is None:
            if hasattr(self.model, "disable_adapter"):
                with self.model.disable_adapter():
                    yield
            else:
                yield
        else:
            self.model.set_adapter(variant.adapter_name)
            yield


@dataclass(frozen=True)
class BaseSource:
    """Where a base model comes from. path: the folder or hub id given to from_pretrained;
    gguf_file: the GGUF file's name in that folder (transformers dequantizes it on load).
    """

    name: str
    local: bool
    path: str
    folder: Path | None = None
    gguf_file: str | None = None
    gguf_path: Path | None = None     # set by materialize: the GGUF file behind `path`
    gguf_digest: str | None = None
    gguf_info: dict[str, Any] | None = None  # architecture, file type, tensor types

    @property
    def load_kwargs(self) -> dict[str, Any]:
        """Extra from_pretrained arguments for this source (gguf_file for a GGUF)."""
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def materialize(source: BaseSource) -> BaseSource:
    """A GGUF base as its dequantized plain folder in the cache (made once per file); any
    other base as it is.
    """
    if not source.gguf_file or source.folder is None:
        return source
    from harness.gguf_base import plain_folder
    from harness.store import default_cache_dir

    gguf_path = source.folder / source.gguf_file
    digest = hash_files(source.folder, [source.gguf_file])
    plain, info = plain_folder(gguf_path, digest, default_cache_dir())
    return BaseSource(source.name, True, str(plain), plain, None, gguf_path, digest, info)


def resolve_base(base: str) -> BaseSource:
    """A hub id, a folder saved with save_pretrained, a .gguf file, or a folder holding
    exactly one .gguf file.
    """
    p = Path(base).expanduser()
    if p.is_file():
        if p.suffix.lower() != ".gguf":
            raise ModelError(f"--base {base} is a file: give a .gguf file, a folder saved with "
                             f"save_pretrained, or a hub id")
        return BaseSource(base, True, str(p.parent), p.parent, p.name)
    if p.is_dir():
        if (p / "config.json").exists():
            return BaseSource(base, True, str(p), p)
        ggufs = sorted(x.name for x in p.iterdir() if x.is_file() and x.suffix.lower() == ".gguf")
        if len(ggufs) == 1:
            return BaseSource(base, True, str(p), p, ggufs[0])
        if ggufs:
            raise ModelError(f"--base {base}: the folder holds {len(ggufs)} .gguf files "
                             f"({', '.join(ggufs[:4])}); give the one to load as --base FILE")
        raise ModelError(f"--base {base}: folder has no config.json and no .gguf file; give a "
                         f"folder saved with save_pretrained, a .gguf file, or a hub id")
    if base.startswith((".", "/", "~")) or os.sep + os.sep in base or base.count("/") > 1 \
            or base.lower().endswith(".gguf"):
        raise NotFoundError(f"--base {base}: no such model folder or file")
    if not base.strip():
        raise ConfigError("--base is empty: give a hub id, a model folder or a .gguf file")
    return BaseSource(base, False, base)


def _device_and_dtype(spec: ModelSpec) -> tuple[str, Any, str]:
    import torch

    from harness.distributed import default_device

    device = spec.device or default_device() or ("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|auto|cuda(:\d+)?|mps", device):
        raise ConfigError(f"--device {device!r}: use cpu, cuda, cuda:N, mps or auto")
    if device.startswith("cuda:") and torch.cuda.is_available() and \
            int(device.split(":")[1]) >= torch.cuda.device_count():
        raise ModelError(f"--device {device}: this machine has {torch.cuda.device_count()} "
                         f"CUDA device(s)")
    name: str
    if device == "auto":  # shard a large model over this machine's GPUs (device_map="auto")
        name = spec.dtype if spec.dtype != "auto" else (
            "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported()
            else "float32")
        return device, getattr(torch, name), name
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"--device {device}: no CUDA device is available here; use --device cpu")
    name = str(spec.dtype)
    if name == "auto":
        name = "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() \
            else "float32"
    return device, getattr(torch, name), name


def _quantization_config(spec: ModelSpec, device: str) -> Any:
    if spec.quantization == "none":
        return None
    flag = "--load-in-4bit" if spec.quantization == "4bit" else "--load-in-8bit"
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except Exception as err:
        raise ModelError(f"{flag} needs bitsandbytes, which cannot be imported here "
                         f"({type(err).__name__}: {err}); pip install bitsandbytes, "
                         f"or drop {flag}") from None
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.quantization == "4bit":
        # As in QLoRA training (seed 000/003/004): NF4, double quantization, bf16 compute.
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch.bfloat16)
    if not device.startswith("cuda"):
        raise ModelError("--load-in-8bit needs a CUDA device with bitsandbytes; "
                         "use --load-in-4bit on CPU, or no quantization")
    return BitsAndBytesConfig(load_in_8bit=True)


def load_tokenizer(base: str, revision: str | None = None, trust_remote_code: bool = False,
                   source: BaseSource | None = None) -> Any:
    """The base's tokenizer, with a pad token set (the EOS where it has none)."""
    from transformers import AutoTokenizer

    source = source or resolve_base(base)
    try:
        tok = AutoTokenizer.from_pretrained(source.path, revision=revision,
                                            trust_remote_code=trust_remote_code,
                                            **source.load_kwargs)
    except Exception as err:
        raise ModelError(f"cannot load the tokenizer of {base}: {_first_line(err)}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _max_length(model: Any, tokenizer: Any, override: int | None) -> int:
    if override is not None:
        return override
    cfg = model.config
    for attr in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(cfg, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    tml = getattr(tokenizer, "model_max_length", None)
    return tml if isinstance(tml, int) and 0 < tml < 10**7 else 2048


def adapter_config(path: Path, raw: str) -> dict[str, Any]:
    """adapter_config.json, checked to be a JSON object naming its peft_type."""
    try:
        cfg = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ModelError(f"--adapter {raw}: adapter_config.json is not valid JSON "
                         f"({_first_line(err)})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("peft_type"), str):
        raise ModelError(f"--adapter {raw}: adapter_config.json is not a PEFT adapter config "
                         f"(no 'peft_type'); give a folder saved with save_pretrained")
    weights = [p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file()]
    if not weights:
        raise ModelError(f"--adapter {raw}: no adapter weights (adapter_model.safetensors) in "
                         f"the folder")
    return cfg


Attached = tuple[str, str, Path, dict[str, Any]]  # peft name, report label, folder, config


def _attach_adapters(model: Any, spec: ModelSpec) -> tuple[Any, list[Attached]]:
    if not spec.adapters:  # a base-only run never imports peft (nor bitsandbytes through it)
        return model, []
    from peft import PeftModel

    attached: list[Attached] = []
    labels: set[str] = set()
    for i, raw in enumerate(spec.adapters):
        path = Path(raw).expanduser()
        if not path.is_dir():
            raise NotFoundError(f"--adapter {raw}: no such folder")
        if not (path / "adapter_config.json").exists():
            raise ModelError(f"--adapter {raw}: no adapter_config.json in the folder; "
                             f"give a PEFT adapter saved with save_pretrained")
        cfg = adapter_config(path, raw)
        name = f"adapter_{i}"
        label = safe_label(path.resolve().name, f"adapter{i}")
        while label in labels or label == "base":
            label = f"{label}_{i}"
        labels.add(label)
        try:
            if i == 0:
                model = PeftModel.from_pretrained(model, str(path), adapter_name=name,
                                                  is_trainable=False)
            else:
                model.load_adapter(str(path), adapter_name=name, is_trainable=False)
        except Exception as err:
            msg = _first_line(err)
            if "size mismatch" in str(err) or "shape" in str(err).lower():
                raise ModelError(f"--adapter {raw} does not fit base {spec.base} (weight shapes "
                                 f"differ: was it trained on another base model?)") from None
            raise ModelError(f"--adapter {raw} cannot be attached to {spec.base}: {msg}") \
                from None
        attached.append((name, label, path, cfg))
    return model, attached


PROBE_TEXT = ("The committee met on Tuesday to review the budget. After a long discussion, "
              "the members agreed to fund the new library and to repair the old bridge.")


def check_adapter(model: Any, tokenizer: Any, device: str, name: str, label: str
                  ) -> dict[str, Any]:
    """Is the adapter on? Its LoRA B matrices must not all be zero (a freshly initialised
    adapter's are), and on a probe text its next-token log-probs must differ from the base's.
    Returns what was measured; raises ModelError when the adapter changes nothing.
    """
    import torch

    b_params = [p for n, p in model.named_parameters() if ".lora_B." in n and
                n.endswith(f".{name}.weight")]
    if b_params and all(not bool(p.detach().any()) for p in b_params):
        raise ModelError(f"--adapter {label}: every LoRA B matrix is zero, as in a freshly "
                         f"initialised adapter, so it changes nothing; was it trained and "
                         f"saved after training?")
    ids = tokenizer(PROBE_TEXT, return_tensors="pt")["input_ids"][:, :64].to(device)
    with torch.no_grad():
        model.set_adapter(name)
        on = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)
        with model.disable_adapter():
            off = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)
    delta = (on - off).abs()
    kl = (on.exp() * (on - off)).sum(-1).mean()
    check = {"probe_tokens": int(ids.shape[1]), "max_abs_logprob_delta": float(delta.max()),
             "mean_kl_adapter_vs_base": float(kl),
             "lora_b_nonzero": bool(b_params) or None}
    if check["max_abs_logprob_delta"] == 0.0:
        raise ModelError(f"--adapter {label} changes nothing: on a {ids.shape[1]}-token probe "
                         f"its log-probs equal the base's exactly; is it attached to the "
                         f"modules it was trained on?")
    return check


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load base (+ quantization) (+ adapters) and describe each variant to evaluate."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bars only; stderr stays readable
    started = time.perf_counter()
    source = materialize(resolve_base(spec.base))
    is_local, folder = source.local, source.folder
    device, dtype, dtype_name = _device_and_dtype(spec)
    quant = _quantization_config(spec, device)
    tokenizer = load_tokenizer(spec.base, spec.revision, spec.trust_remote_code, source)
    kwargs: dict[str, Any] = {"revision": spec.revision,
                              "trust_remote_code": spec.trust_remote_code,
                              **source.load_kwargs}
    if quant is not None:
        kwargs.update(quantization_config=quant,
                      device_map="auto" if device == "auto" else {"": device})
    else:
        kwargs["dtype"] = dtype
        if device == "auto":
            kwargs["device_map"] = "auto"
        elif device.startswith("cuda"):
            # Straight from the files to the GPU: no copy of the weights in host memory, no
            # host-to-device copy after.
            kwargs["device_map"] = {"": device}
    # A local folder's weights are hashed (for the fingerprint) while they load: sha256
    # releases the GIL, and the files are read from the page cache the load fills. Any
    # failure below stops the hashing at its next chunk.
    stop = threading.Event()
    hashing: Future[str] | None = None
    if is_local and folder is not None and source.gguf_digest is None:
        pool = ThreadPoolExecutor(1, thread_name_prefix="harness-hash")
        hashing = pool.submit(hash_files, folder, None, stop)
        pool.shutdown(wait=False)
    try:
        try:
            model = AutoModelForCausalLM.from_pretrained(source.path, **kwargs)
        except Exception as err:
            hint = " (offline? give a local folder)" if not is_local else ""
            raise ModelError(f"cannot load model {spec.base}{hint}: {_first_line(err)}") \
                from None
        if device == "auto":  # inputs go where the embeddings are
            device = str(model.get_input_embeddings().weight.device)
        elif quant is None:
            model.to(device)  # type: ignore[arg-type]  # transformers' stub takes a model
        model.eval()
        model, attached = _attach_adapters(model, spec)
        model.eval()
    except BaseException:
        stop.set()
        raise

    if source.gguf_path is not None:  # one GGUF file: its digest covers weights and tokenizer
        info = source.gguf_info or {}
        base_fp = {"id": str(spec.base), "weights_sha256": source.gguf_digest,
                   "format": "gguf", "gguf_file_type": info.get("file_type"),
                   "gguf_architecture": info.get("architecture")}
    elif hashing is not None and folder is not None:  # a local folder
        tok_files = [n for n in TOKENIZER_FILES if (folder / n).exists()]
        config_files = [n for n in CONFIG_FILES if (folder / n).exists()]
        base_fp = {"id": str(spec.base), "weights_sha256": hashing.result(),
                   "config_sha256": hash_files(folder, config_files) if config_files else None,
                   "tokenizer_sha256": hash_files(folder, tok_files) if tok_files else None}
    else:
        commit = getattr(model.config, "_commit_hash", None) if not attached else \
            getattr(model.get_base_model().config, "_commit_hash", None)
        base_fp = {"id": spec.base, "revision": spec.revision or commit}
    common = {"base": base_fp, "quantization": spec.quantization,
              "dtype": dtype_name if quant is None else "bfloat16-compute"}
    variants: list[Variant] = []
    if spec.include_base or not attached:
        variants.append(Variant("base", None, {**common, "adapter": None}))
    for name, label, path, cfg in attached:
        names = [p.name for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES]
        adapter_fp = {"path": str(path),
                      "weights_sha256": hash_files(path, names + ["adapter_config.json"]),
                      "peft_type": cfg.get("peft_type"), "r": cfg.get("r")}
        variants.append(Variant(label, name, {**common, "adapter": adapter_fp}))
    for v in variants:
        v.fingerprint["id"] = fingerprint_id(v.fingerprint)
    for v in variants:  # after the ids: the check describes the adapter, it does not key it
        if v.adapter_name is not None:
            v.fingerprint["adapter"]["check"] = check_adapter(model, tokenizer, device,
                                                              v.adapter_name, v.label)
    return LoadedModel(model=model, tokenizer=tokenizer, device=device, dtype=dtype_name,
                       max_length=_max_length(model, tokenizer, spec.max_length),
                       variants=variants, load_seconds=time.perf_counter() - started)
