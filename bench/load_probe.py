"""Where `harness run`'s model loading goes (session 5), on the GPU machine, each step in a
fresh process (imports timed apart), for the random Qwen3-1.7B and Llama-3-8B folders that
bench/gpu_env.sh saves:

    python bench/load_probe.py /tmp/qwen3-random /tmp/llama3-random

Writes load_probe.json to $OUT. Steps run in order: the digest, once computed, is remembered
for the later steps of the same folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPORTS = """
import torch
from transformers import AutoModelForCausalLM
from harness.models import load_model, hash_files
from harness.specs import ModelSpec
torch.zeros(1, device="cuda")
"""
STEPS = {
    "from_pretrained to host memory, then .to(cuda) (before)": """
m = AutoModelForCausalLM.from_pretrained(FOLDER, dtype=torch.bfloat16)
m.to("cuda")""",
    "from_pretrained with device_map cuda (now)": """
m = AutoModelForCausalLM.from_pretrained(FOLDER, dtype=torch.bfloat16, device_map={"": "cuda"})
""",
    "sha256 of the weights alone": """
import harness.models as hm
hm._remember_hash = lambda k, v: None
hash_files(Path(FOLDER))""",
    "load_model, via host memory, digest computed after the load (before)": """
import harness.models as hm
class Later:  # the digest computed when asked for, after the load, as before
    def __init__(self, *args, **kwargs): pass
    def shutdown(self, wait=True): pass
    def submit(self, fn, *args):
        return type("F", (), {"result": lambda self: fn(*args)})()
hm.ThreadPoolExecutor = Later
m = load_model(ModelSpec(base=FOLDER, dtype="bfloat16", device="cuda"))""",
    "load_model, digest computed while loading (now, first run)": """
m = load_model(ModelSpec(base=FOLDER, dtype="bfloat16", device="cuda"))""",
    "load_model, digest remembered (now, later runs)": """
m = load_model(ModelSpec(base=FOLDER, dtype="bfloat16", device="cuda"))""",
    # Session 6: what load_model does beyond from_pretrained, a piece at a time.
    "load_tokenizer alone": """
from harness.models import load_tokenizer
load_tokenizer(FOLDER, None, False)""",
    "import peft (bitsandbytes with it), which a base-only load no longer does": """
import peft""",
}

RUN = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
FOLDER = {folder!r}
t = time.perf_counter()
{imports}
torch.cuda.synchronize()
print("IMPORTS", time.perf_counter() - t)
t = time.perf_counter()
{body}
torch.cuda.synchronize()
print("SECONDS", time.perf_counter() - t)
"""


def main() -> None:
    out: dict = {}
    for folder in sys.argv[1:]:
        cache = tempfile.mkdtemp()  # no remembered digests at first
        for name, body in STEPS.items():
            env = {**os.environ, "HARNESS_CACHE": cache}
            if "via host memory" in name:
                env["HARNESS_LOAD_VIA_CPU"] = "1"
                env["HARNESS_CACHE"] = tempfile.mkdtemp()
            r = subprocess.run([sys.executable, "-c", RUN.format(
                root=str(ROOT), folder=folder, imports=IMPORTS, body=body)],
                capture_output=True, text=True, env=env)
            got = {x.split()[0]: round(float(x.split()[1]), 2) for x in r.stdout.splitlines()
                   if x.startswith(("IMPORTS", "SECONDS"))}
            row = {"imports_s": got.get("IMPORTS"), "seconds": got.get("SECONDS"),
                   "err": r.stderr[-400:] if r.returncode else None}
            out[f"{Path(folder).name}: {name}"] = row
            print(Path(folder).name, name, row, flush=True)
    Path(os.environ.get("OUT", "/tmp"), "load_probe.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
