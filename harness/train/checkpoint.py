"""Checkpoints for --resume: trainable weights, optimizer, scheduler, RNG, loop state."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE = "trainer_state.json"


def save_rng(folder: Path) -> None:
    """RNG states without pickle: python/numpy as JSON, torch generators as safetensors."""
    from safetensors.torch import save_file

    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    (folder / "rng.json").write_text(json.dumps({
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss),  # type: ignore[union-attr]
                  float(cached)]}))
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors |= {f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    save_file(tensors, str(folder / "rng.safetensors"))


def load_rng(folder: Path) -> None:
    """Restore Python's, NumPy's, torch's (and CUDA's) random states from a checkpoint."""
    from safetensors.torch import load_file

    data = json.loads((folder / "rng.json").read_text())
    version, internal, gauss = data["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = data["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    tensors = load_file(str(folder / "rng.safetensors"))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(folder: Path, peft_model: Any, optimizer: Any, scheduler: Any,
                    loop: dict[str, Any]) -> None:
    """Write to a temporary folder, then rename: a crash never leaves a half checkpoint."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().cpu().contiguous()
               for k, v in get_peft_model_state_dict(peft_model).items()}
    save_file(weights, str(tmp / "adapter_weights.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
               tmp / "optim.pt")
    save_rng(tmp)
    (tmp / STATE).write_text(json.dumps(loop, sort_keys=True))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


def _checkpoints(root: Path) -> list[Path]:
    """step-N folders holding a trainer state, oldest first (other names are ignored)."""
    found = [p for p in root.glob("step-*")
             if re.fullmatch(r"step-\d+", p.name) and (p / STATE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(root: Path) -> Path | None:
    """The newest checkpoint folder under root, or None."""
    found = _checkpoints(root)
    return found[-1] if found else None


def load_checkpoint(folder: Path, peft_model: Any, optimizer: Any,
                    scheduler: Any) -> dict[str, Any]:
    """Restore the adapter, optimizer and scheduler from a checkpoint; returns its state."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(peft_model, load_file(str(folder / "adapter_weights.safetensors")))
    optim = torch.load(folder / "optim.pt", weights_only=True)
    optimizer.load_state_dict(optim["optimizer"])
    scheduler.load_state_dict(optim["scheduler"])
    load_rng(folder)
    return json.loads((folder / STATE).read_text())


def prune_checkpoints(root: Path, keep: int) -> None:
    """Keep the newest `keep` checkpoints."""
    for p in _checkpoints(root)[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
