"""harness export --gguf: GGUF files written with the gguf package, read back through
transformers and held against the source model (KLD, same top token), for the llama, qwen2 and
qwen3 layouts; Q/K permutation, tied embeddings, tokenizer and chat template carried over."""

import json
import shutil

import numpy as np
import pytest
from tests_helpers import qwen_model, rescaled_llama

from harness.cli import main

TEXT = "The committee met on Tuesday to review the budget and the plan."


def _logprobs(model, tok, text=TEXT):
    import torch

    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=ids).logits.float(), -1)


def _export(capsys, *args):
    code = main(["export", *args])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()


def test_llama_gguf_types_read_back_and_keep_the_layout(tiny_lm, tmp_path, capsys):
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "out"
    for kind in ("f16", "q8_0", "q4_0"):
        _export(capsys, "--base", str(tiny_lm), "--gguf", kind, "--out", str(out))
    record = json.loads((out / "export.json").read_text())["gguf"]
    klds = [record[k]["check"]["kld_mean"] for k in ("f16", "q8_0", "q4_0")]
    assert klds[0] < 1e-5 < klds[1] < 1e-2 < klds[2], klds
    assert record["q4_0"]["tensor_types"]["Q4_0"] > 0 and record["q8_0"]["tensor_types"]["Q8_0"]
    # transformers reads it back (dequantized), tokenizer included
    tok = AutoTokenizer.from_pretrained(tiny_lm)
    back_tok = AutoTokenizer.from_pretrained(out, gguf_file="tiny-lm0-f16.gguf")
    assert back_tok(TEXT).input_ids == tok(TEXT).input_ids
    src = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()
    back = AutoModelForCausalLM.from_pretrained(out, gguf_file="tiny-lm0-f16.gguf",
                                                dtype=torch.float32).eval()
    assert float((_logprobs(src, tok) - _logprobs(back, tok)).abs().max()) < 1e-2
    # Q is stored in llama.cpp's interleaved rope layout, not HF's
    reader = gguf.GGUFReader(out / "tiny-lm0-f16.gguf")
    stored = {t.name: t for t in reader.tensors}
    q_hf = src.model.layers[0].self_attn.q_proj.weight.detach().numpy()
    q_file = np.asarray(stored["blk.0.attn_q.weight"].data, dtype=np.float32).reshape(q_hf.shape)
    from harness.gguf_export import permute_qk

    heads = src.config.num_attention_heads
    assert np.allclose(q_file, permute_qk(q_hf, heads, heads), atol=1e-3)
    assert not np.allclose(q_file, q_hf, atol=1e-3)
    fields = {f: reader.fields[f] for f in reader.fields}
    assert "tokenizer.chat_template" in fields and "tokenizer.ggml.merges" in fields


def test_a_killed_exports_partial_file_is_removed_by_the_next_export(tiny_lm, tmp_path,
                                                                      capsys):
    import os
    import subprocess

    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid whose process is gone, as after a SIGKILL
    left = out / f".harness-staging-{dead.pid}-abc.gguf.part"
    left.write_bytes(b"GGUF half a file")
    live = out / f".harness-staging-{os.getpid()}-def.gguf.part"  # a running export's
    live.write_bytes(b"GGUF being written")
    _export(capsys, "--base", str(tiny_lm), "--gguf", "f16", "--out", str(out))
    assert not left.exists() and live.exists()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "export.json", "tiny-lm0-f16.gguf"]


@pytest.mark.parametrize("rope", [
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 64},
    {"rope_type": "linear", "factor": 4.0}], ids=["llama3", "linear"])
def test_rope_scaling_is_written_and_checked_against_transformers(rope, tiny_lm, tmp_path,
                                                                  capsys):
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.gguf_export import llama3_rope_factors

    src = rescaled_llama(tiny_lm, tmp_path / "src", rope)
    out = tmp_path / "out"
    _export(capsys, "--base", str(src), "--gguf", "f16", "--out", str(out))
    check = json.loads((out / "export.json").read_text())["gguf"]["f16"]["check"]
    assert check["rope"]["rope_scaling"] == rope["rope_type"]
    assert check["rope"]["max_abs_error_vs_transformers"] < 1e-4
    assert check["kld_mean"] < 1e-5
    reader = gguf.GGUFReader(out / "src-f16.gguf")
    tensors = {t.name: t for t in reader.tensors}
    if rope["rope_type"] == "llama3":
        factors = np.asarray(tensors["rope_freqs.weight"].data)
        # all three regions of the formula are present at these sizes
        assert factors.min() == 1.0 and factors.max() == 8.0
        assert ((factors > 1.0) & (factors < 8.0)).any()
        assert np.allclose(factors, llama3_rope_factors(rope, 10000.0, 16))
    else:
        assert "rope_freqs.weight" not in tensors
        assert reader.fields["llama.rope.scaling.factor"].contents() == 4.0
    # the scaling matters: under plain rope the same weights give other log-probs, so the
    # check above could fail
    tok = AutoTokenizer.from_pretrained(src)
    scaled = AutoModelForCausalLM.from_pretrained(src).eval()
    plain = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()
    with torch.no_grad():
        assert float((_logprobs(scaled, tok) - _logprobs(plain, tok)).abs().max()) > 1e-3


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_qwen_gguf_reads_back(arch, tiny_lm, tmp_path, capsys):
    import gguf

    src = qwen_model(tiny_lm, tmp_path / arch, arch)
    out = tmp_path / "out"
    _export(capsys, "--base", str(src), "--gguf", "f16", "--out", str(out))
    check = json.loads((out / "export.json").read_text())["gguf"]["f16"]
    assert check["architecture"] == arch and check["tied_embeddings"]
    assert check["check"]["kld_mean"] < 1e-5 and check["check"]["same_top_token"] > 0.99
    names = {t.name for t in gguf.GGUFReader(out / f"{arch}-f16.gguf").tensors}
    assert "output.weight" not in names and "token_embd.weight" in names
    if arch == "qwen3":
        assert "blk.0.attn_q_norm.weight" in names
    else:
        assert "blk.0.attn_q.bias" in names


def test_merged_adapter_to_gguf_and_compared_as_a_candidate(tiny_lm, adapter, example_data,
                                                            tmp_path, capsys):
    out = tmp_path / "merged"
    _export(capsys, str(adapter), "--merge", "--base", str(tiny_lm), "--gguf", "q8_0", "--out",
            str(out))
    record = json.loads((out / "export.json").read_text())
    assert record["kind"] == "merged_adapter" and record["gguf"]["q8_0"]["check"]["tokens"] > 500
    gguf_file = out / "merged-q8_0.gguf"
    cmp = tmp_path / "cmp"
    assert main(["compare", "--base", str(out), "--candidate", str(gguf_file), "--tasks",
                 "hellaswag", "--data", f"hellaswag={example_data['hellaswag']}", "--limit",
                 "6", "--no-cache", "--out", str(cmp)]) == 0, capsys.readouterr().err
    block = json.loads((cmp / "report.json").read_text())["divergence"]
    assert 0 < block["kld_mean"] < 1e-2


def test_merged_lora_on_a_tiny_qwen3_to_gguf(tiny_lm, tmp_path, capsys):
    """A LoRA on a tiny Qwen3 (head_dim 32, tied embeddings): merged, checked against base +
    adapter, written as q8_0 GGUF and read back within the limit."""
    from conftest import make_adapter

    base = qwen_model(tiny_lm, tmp_path / "qwen3", "qwen3")
    lora = make_adapter(base, tmp_path / "qwen3-lora", seed=3)
    out = tmp_path / "merged"
    _export(capsys, str(lora), "--merge", "--base", str(base), "--gguf", "q8_0", "--out",
            str(out))
    record = json.loads((out / "export.json").read_text())
    assert record["merge_check"]["max_abs_logprob_delta"] < 1e-3
    gguf_record = record["gguf"]["q8_0"]
    assert gguf_record["architecture"] == "qwen3" and gguf_record["pre_tokenizer"] == "qwen2"
    assert gguf_record["tied_embeddings"] and gguf_record["check"]["kld_mean"] < 1e-2
    assert (out / "merged-q8_0.gguf").is_file()


def test_gguf_export_errors_are_one_line(tiny_lm, tmp_path, capsys):
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100)).save_pretrained(
        gpt2)
    yarn = rescaled_llama(tiny_lm, tmp_path / "yarn", {"rope_type": "yarn", "factor": 4.0,
                                                   "original_max_position_embeddings": 128})
    odd = tmp_path / "odd-split"  # a pre-tokenizer llama.cpp has no name for
    shutil.copytree(tiny_lm, odd)
    spec = json.loads((odd / "tokenizer.json").read_text())
    spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "WhitespaceSplit"}, {"type": "ByteLevel", "add_prefix_space": False,
                                      "trim_offsets": False, "use_regex": True}]}
    (odd / "tokenizer.json").write_text(json.dumps(spec))
    capsys.readouterr()
    for args, message in [
        (["--base", str(odd), "--gguf", "f16"], "pre-tokenizer (WhitespaceSplit + ByteLevel) "
                                                "is not one llama.cpp is known to split alike"),
        (["--base", str(gpt2), "--gguf", "f16"], "architecture 'gpt2' is not written yet"),
        (["--base", str(yarn), "--gguf", "f16"], "rope scaling 'yarn' is not written yet "
                                                 "(supported: none, linear, llama3)"),
        (["--gguf", "f16"], "export needs ADAPTER --merge"),
        (["--base", str(tiny_lm), "--gguf", "q4_k_m"], "run llama.cpp's llama-quantize"),
        (["--base", str(tiny_lm), "--gguf", "IQ2_XS"], "for K-quants and IQ types"),
        (["--base", str(tiny_lm), "--gguf", "q9"], "expected f16, q8_0 or q4_0, got 'q9'"),
        (["--base", str(tiny_lm)], "export needs ADAPTER --merge"),
    ]:
        out = tmp_path / "o"
        assert main(["export", *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert not out.exists() or not any(out.iterdir())


@pytest.mark.realmodel
@pytest.mark.timeout(900)
def test_real_model_gguf_round_trip(tmp_path, capsys):
    """SmolLM2-135M-Instruct (dequantized from its Q4_1 file) written as f16 GGUF: read back,
    the same tokens, the same chat template, and near-identical next-token distributions."""
    import gguf
    from test_gguf import smollm2_gguf
    from transformers import AutoTokenizer

    from harness.models import materialize, resolve_base

    source = smollm2_gguf()
    out = tmp_path / "out"
    _export(capsys, "--base", str(source), "--gguf", "f16", "--out", str(out))
    check = json.loads((out / "export.json").read_text())["gguf"]["f16"]["check"]
    assert check["kld_mean"] < 1e-4 and check["same_top_token"] > 0.99, check
    written = out / "SmolLM2-135M-Instruct.Q4_1-f16.gguf"
    plain = materialize(resolve_base(str(source))).folder
    tok = AutoTokenizer.from_pretrained(plain)
    back = AutoTokenizer.from_pretrained(out, gguf_file=written.name)
    text = "Sunhill will open a solar farm in Marlow. The solar farm will employ 60 people."
    assert back(text).input_ids == tok(text).input_ids
    fields = gguf.GGUFReader(written).fields
    # named from the tokenizer the harness evaluates with: transformers reads the source file's
    # "smollm" pre-tokenizer as plain GPT-2 ByteLevel (digits grouped), and the export keeps
    # what was evaluated and trained on
    assert json.loads(tok.backend_tokenizer.to_str())["pre_tokenizer"]["type"] == "ByteLevel"
    assert fields["tokenizer.ggml.pre"].contents() == "gpt-2"
    assert "<|im_start|>" in fields["tokenizer.chat_template"].contents()


def test_exports_into_one_folder_at_once_keep_every_entry(tmp_path):
    """export.json is read, changed and replaced under a lock on --out: concurrent exports
    (here 16 threads) all keep their entries, and no temporary file is left."""
    import threading

    from harness.export import ExportSpec, _add_to_record

    out = tmp_path / "out"
    out.mkdir()
    threads = [threading.Thread(target=_add_to_record, args=(
        out, ExportSpec(adapter=None, out=out, base="b", gguf=f"t{i}"), {"i": i}))
        for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    record = json.loads((out / "export.json").read_text())
    assert record["gguf"] == {f"t{i}": {"i": i} for i in range(16)}
    assert [p.name for p in out.iterdir()] == ["export.json"]
