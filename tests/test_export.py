"""harness export ADAPTER --merge: a plain transformers folder whose log-probs equal the
un-merged base + adapter's; its errors are one line."""

import json

import pytest

from harness.cli import main
from harness.models import PROBE_TEXT


def _logprobs(model, tokenizer, text=PROBE_TEXT):
    import torch

    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)


def test_merged_folder_loads_plainly_and_matches_base_plus_adapter(tiny_lm, adapter, tmp_path,
                                                                   capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    assert main(["export", str(adapter), "--merge", "--base", str(tiny_lm), "--out",
                 str(out)]) == 0, capsys.readouterr().err
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "export.json", "tokenizer.json",
            "generation_config.json"} <= names
    assert not any(n.startswith(".harness-staging") for n in names)
    summary = json.loads((out / "export.json").read_text())
    assert summary["dtype"] == "float32" and summary["merge_check"]["max_abs_logprob_delta"] < 1e-4
    # plain transformers, no peft, no harness
    merged = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert not hasattr(merged, "peft_config")
    base = AutoModelForCausalLM.from_pretrained(tiny_lm)
    unmerged = PeftModel.from_pretrained(base, str(adapter))
    texts = [PROBE_TEXT, "Summarize the following news article: the council met today."]
    for text in texts:
        a, b = _logprobs(merged, tokenizer, text), _logprobs(unmerged, tokenizer, text)
        assert float((a - b).abs().max()) < 1e-4
    # and the adapter does change the model (the comparison above is not vacuous)
    plain = AutoModelForCausalLM.from_pretrained(tiny_lm)
    assert float((_logprobs(plain, tokenizer) - _logprobs(merged, tokenizer)).abs().max()) > 0.1


def test_export_finds_the_base_the_adapter_names(tiny_lm, adapter, tmp_path, capsys):
    """Without --base: the adapter config's base_model_name_or_path (here the tiny model)."""
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(tiny_lm)
    out = tmp_path / "m"
    assert main(["export", str(adapter), "--merge", "--dtype", "bfloat16", "--out",
                 str(out)]) == 0, capsys.readouterr().err
    assert json.loads((out / "export.json").read_text())["dtype"] == "bfloat16"
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


@pytest.mark.parametrize("case", ["no-folder", "no-merge", "bad-config", "bad-base"])
def test_export_errors_are_one_line(case, tiny_lm, adapter, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["export", str(adapter), "--merge", "--out", str(out)]
    if case == "no-folder":
        args[1] = str(tmp_path / "missing")
    elif case == "no-merge":
        args.remove("--merge")
    elif case == "bad-config":
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "adapter_config.json").write_text("{not json")
        (broken / "adapter_model.safetensors").write_bytes(b"x")
        args[1] = str(broken)
    elif case == "bad-base":
        args += ["--base", str(tmp_path / "nowhere")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists()  # nothing half-written, the folder it made removed again
