"""Fingerprints: the sha256 digests that identify a model's weights, config and tokenizer
files (the result store's model key), remembered by file identity so a 16 GB model is read
once, not on every run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
CONFIG_FILES = ("config.json", "generation_config.json")  # shape outputs as much as weights do
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "tokenizer.model", "vocab.json", "merges.txt")


HASH_CACHE = "file-hashes.json"  # in the result store's folder: digests by file identity
_HASH_CACHE_SIZE = 512


def hash_files(folder: Path, names: list[str] | None = None,
               stop: threading.Event | None = None) -> str:
    """sha256 over the weight files of a folder (names and contents, sorted by name).

    Reading 16 GB of an 8B model's weights takes seconds, so the digest is remembered (in
    `file-hashes.json` beside the result store) under the files' identity: path, size,
    modification and status-change times, inode. Rewriting or replacing a file changes its
    status-change time, which no tool sets back, so a changed file is hashed again. `stop`
    set: returns "" at the next chunk (the load failed; nobody needs the digest).
    """
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and (p.name in names if names else p.suffix in WEIGHT_SUFFIXES))
    stats = [p.stat() for p in files]
    identity = json.dumps([str(folder.resolve()), names,
                           [[p.name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
                            for p, st in zip(files, stats, strict=True)]])
    key = hashlib.sha256(identity.encode()).hexdigest()
    known = _hash_cache()
    if isinstance(known.get(key), str) and re.fullmatch(r"[0-9a-f]{64}", known[key]):
        return known[key]
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode() + b"\0")
        with p.open("rb") as fh:
            for chunk in iter(functools.partial(fh.read, 1 << 24), b""):
                if stop is not None and stop.is_set():
                    return ""
                digest.update(chunk)
    value = digest.hexdigest()
    if [p.stat() for p in files] == stats:  # unchanged while read
        _remember_hash(key, value)
    return value


def _hash_cache_path() -> Path:
    from harness.store import default_cache_dir

    return default_cache_dir() / HASH_CACHE


def _hash_cache() -> dict[str, str]:
    try:
        data = json.loads(_hash_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember_hash(key: str, value: str) -> None:
    """Adds one digest to the cache file (the newest _HASH_CACHE_SIZE kept), written whole to
    a temporary file and renamed over it; a cache that cannot be written is skipped.
    """
    import tempfile

    path = _hash_cache_path()
    known = _hash_cache()
    known.pop(key, None)
    known[key] = value
    known = dict(list(known.items())[-_HASH_CACHE_SIZE:])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False,
                                         suffix=".tmp", encoding="utf-8") as fh:
            json.dump(known, fh)
        os.replace(fh.name, path)
    except OSError:
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(fh.name)


def fingerprint_id(fp: dict[str, Any]) -> str:
    """A fingerprint's 16-hex-digit id: the store key's model part."""
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]
