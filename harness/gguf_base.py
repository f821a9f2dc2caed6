"""GGUF files as base models.

transformers reads a GGUF file (`from_pretrained(folder, gguf_file=NAME)`) by dequantizing
every tensor to full precision and converting its tokenizer, which takes tens of seconds for
even a 135M model on a CPU. The harness does that once per file: the dequantized weights
(float32 safetensors, the exact values transformers produced), config, generation config and
tokenizer are saved in the cache folder under the file's sha256 (`gguf/<sha>/`, about 4 bytes
a parameter) and later loads read that folder. Results are keyed by the GGUF file's sha256
either way.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from harness.errors import ModelError
from harness.errors import first_line as _first_line

MARKER = "harness-gguf.json"  # written last: a folder without it is not a finished copy
FORMAT = 2  # bump when the copy's layout changes (2: no quantization_config in config.json)
PLAIN_TYPES = {"F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64"}


def gguf_info(path: Path) -> dict[str, Any]:
    """Architecture, file type and tensor types of a GGUF file, from its header (no weights
    read); a one-line ModelError where it cannot be read.
    """
    try:
        import gguf
    except ImportError:
        raise ModelError(f"--base {path.name}: reading GGUF files needs the gguf package: "
                         f"pip install gguf") from None
    try:
        reader = gguf.GGUFReader(str(path))
        arch_field = reader.fields["general.architecture"]
        arch = bytes(arch_field.parts[arch_field.data[0]]).decode("utf-8")
        ftype = None
        if "general.file_type" in reader.fields:
            f = reader.fields["general.file_type"]
            value = int(f.parts[f.data[0]][0])
            try:
                ftype = gguf.LlamaFileType(value).name.removeprefix("MOSTLY_")
            except ValueError:
                ftype = str(value)
        types = sorted({t.tensor_type.name for t in reader.tensors})
    except Exception as err:  # a damaged or foreign file: GGUFReader raises many types
        raise ModelError(f"--base {path}: not a readable GGUF file ({_first_line(err)})") \
            from None
    return {"architecture": arch, "file_type": ftype, "tensor_types": types}


def check_gguf(path: Path) -> dict[str, Any]:
    """gguf_info, after checking that transformers can load the architecture and that every
    tensor type can be dequantized; otherwise one line naming what is supported.
    """
    info = gguf_info(path)
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    arch = info["architecture"]
    known = {a.replace("_", "") for a in GGUF_SUPPORTED_ARCHITECTURES}
    if arch not in GGUF_SUPPORTED_ARCHITECTURES and arch.replace("_", "") not in known:
        supported = ", ".join(sorted(GGUF_SUPPORTED_ARCHITECTURES))
        raise ModelError(f"--base {path.name}: GGUF architecture '{arch}' cannot be loaded by "
                         f"transformers (supported: {supported})")
    import gguf.quants as quants

    readable = {t.name for t in quants._type_traits} | PLAIN_TYPES
    unreadable = [t for t in info["tensor_types"] if t not in readable]
    if unreadable:
        raise ModelError(f"--base {path.name}: GGUF tensor type(s) {', '.join(unreadable)} "
                         f"cannot be dequantized here (readable: {', '.join(sorted(readable))})")
    return info


def _key_length(path: Path) -> int | None:
    import gguf

    reader = gguf.GGUFReader(str(path))
    arch = reader.fields["general.architecture"].contents()
    field = reader.fields.get(f"{arch}.attention.key_length")
    return int(field.contents()) if field is not None else None


def load_gguf_model(path: Path, **kwargs: Any) -> Any:
    """A transformers AutoModelForCausalLM from a GGUF file (dequantized). transformers' GGUF
    reader ignores the file's attention.key_length (for Qwen3 it assumes head_dim 128); the
    config is read first and its head_dim set from the file where they differ.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    key_length = _key_length(path)
    if key_length and getattr(config, "head_dim", None) not in (None, key_length):
        config.head_dim = key_length
    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                config=config, **kwargs)


def plain_folder(gguf_path: Path, digest: str, cache: Path) -> tuple[Path, dict[str, Any]]:
    """The dequantized copy of a GGUF file as a plain model folder, made on first use (the
    file's header is checked then), and the file's gguf_info as recorded at conversion.
    """
    folder = cache / "gguf" / digest[:32]
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        if marker.get("sha256") == digest and isinstance(marker.get("info"), dict) and \
                marker.get("format") == FORMAT:
            return folder, marker["info"]
    except (OSError, ValueError):
        pass
    info = check_gguf(gguf_path)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_path.name}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kwargs)
        loaded = load_gguf_model(gguf_path)
    except Exception as err:
        raise ModelError(f"cannot load GGUF base {gguf_path}: {_first_line(err)}") from None
    # A GGUF-loaded model refuses save_pretrained ("not serializable"): a model built from its
    # config takes the dequantized weights, and that one is saved.
    config = loaded.config
    if hasattr(config, "quantization_config"):  # the GGUF loading options: not this copy's
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=loaded.dtype)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise ModelError(f"cannot convert GGUF base {gguf_path}: weights do not fit its config "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.tie_weights()
    model.generation_config = loaded.generation_config
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps({"gguf": str(gguf_path), "sha256": digest,
                                              "info": info, "format": FORMAT}))
        if folder.exists():  # a damaged earlier conversion
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process converted it meanwhile
            if not (folder / MARKER).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder, info
