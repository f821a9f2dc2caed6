"""Data loading (formats, field mapping, checks) and prompt building (truncation)."""

import json

import pandas as pd
import pytest
from transformers import AutoTokenizer

from harness.data import load_task_data
from harness.errors import DataError, NotFoundError
from harness.prompts import PromptBuilder, render
from harness.registry import discover_tasks

REG = discover_tasks()


def test_builtin_tasks_are_registered():
    assert {"pubmed", "cnn_dailymail", "medquad", "hellaswag"} <= set(REG)
    assert REG["cnn_dailymail"].prompt.startswith("[INST] Summarize the following news article:")
    assert REG["hellaswag"].kind == "multiple_choice"


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "csv"])
def test_local_formats_load_alike(fmt, tmp_path):
    rows = [{"article": f"text {i}", "abstract": f"sum {i}", "extra": i} for i in range(5)]
    path = tmp_path / f"d.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "parquet":
        pd.DataFrame(rows).to_parquet(path)
    else:
        pd.DataFrame(rows).to_csv(path, index=False)
    data = load_task_data(REG["pubmed"], str(path), limit=3)
    assert [e.fields["article"] for e in data.examples] == ["text 0", "text 1", "text 2"]
    assert data.source == f"file:{path}"
    assert len(data.sha256) == 64


def test_column_matched_ignoring_case(example_data):
    # medquad's hub columns are Question/Answer; the local files use question/answer.
    data = load_task_data(REG["medquad"], str(example_data["medquad"]), limit=2)
    assert data.examples[0].fields["question"].startswith("What")


def test_missing_column_names_the_columns(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "a", "summary": "b"}) + "\n")
    with pytest.raises(DataError, match="no column 'article'.*columns: text, summary"):
        load_task_data(REG["pubmed"], str(path), None)


def test_missing_file_and_bad_rows(tmp_path):
    with pytest.raises(NotFoundError, match="does not exist"):
        load_task_data(REG["pubmed"], str(tmp_path / "nope.jsonl"), None)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"article": "ok", "abstract": "x"}\n{"article": "\xff\xfe", "abstract": 1}\n')
    with pytest.raises(DataError, match="line 2 is not valid UTF-8"):
        load_task_data(REG["pubmed"], str(bad), None)
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"article": "a", "abstract": "  "}) + "\n")
    with pytest.raises(DataError, match="empty reference 'abstract'"):
        load_task_data(REG["pubmed"], str(empty), None)
    nonstr = tmp_path / "nonstr.jsonl"
    nonstr.write_text(json.dumps({"article": ["a"], "abstract": "b"}) + "\n")
    with pytest.raises(DataError, match="'article' is not text"):
        load_task_data(REG["pubmed"], str(nonstr), None)


def test_hellaswag_rows_with_single_ctx(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps({"activity_label": "Roof shingle removal",
                                "ctx": "A man is sitting on a roof. he",
                                "endings": ["a", "b [title] c", "d", "e"], "label": 3}) + "\n")
    ex = load_task_data(REG["hellaswag"], str(path), None).examples[0]
    assert ex.fields["query"] == "Roof shingle removal: A man is sitting on a roof. he"
    assert ex.fields["choices"] == ["a", "b. c", "d", "e"]
    assert ex.fields["label"] == 3


def test_render_is_plain_substitution():
    assert render("{a} {{literal}} {b}", {"a": "x", "b": "{a}"}) == "x {literal} {a}"


def test_truncation_cuts_only_the_article(plain_lm):
    tok = AutoTokenizer.from_pretrained(plain_lm)
    task = REG["cnn_dailymail"]
    article = " ".join(f"word{i}" for i in range(400))
    builder = PromptBuilder(task, tok)
    full = builder.build({"article": article, "highlights": "h", "id": "0"}, None, "0")
    cut = builder.build({"article": article, "highlights": "h", "id": "0"}, 100, "0")
    assert not full.truncated and cut.truncated
    assert len(cut.ids) <= 100
    assert cut.text.startswith("[INST] Summarize the following news article:\n\nword0")
    assert cut.text.endswith("\n\nSummary: [/INST]")
    assert len(cut.text) < len(full.text)
    with pytest.raises(DataError, match="even with 'article' cut away"):
        builder.build({"article": article, "highlights": "h", "id": "0"}, 5, "0")


def test_chat_template_used_when_present(tiny_lm, plain_lm):
    task = REG["medquad"]
    values = {"question": "What is marsh cough ?", "answer": "a", "qtype": "information"}
    chat = PromptBuilder(task, AutoTokenizer.from_pretrained(tiny_lm))
    plain = PromptBuilder(task, AutoTokenizer.from_pretrained(plain_lm))
    assert chat.use_chat and chat.text(values) == "<|user|>\nWhat is marsh cough ?\n<|assistant|>\n"
    assert not plain.use_chat and plain.text(values) == "Question: What is marsh cough ?\nAnswer:"


def test_hub_dataset_path(monkeypatch):
    """Without --data a task loads its hub dataset through `datasets`, with its config and
    split (sliced to --limit); offline, a clear error says how to use a local file."""
    import datasets

    calls = []

    def fake_load(path, name=None, split=None, revision=None):
        calls.append((path, name, split))
        return [{"id": f"r{i}", "article": "a", "highlights": "h"} for i in range(3)]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    data = load_task_data(REG["cnn_dailymail"], None, limit=3)
    assert calls == [("abisee/cnn_dailymail", "3.0.0", "test[:3]")]
    assert data.source == "hub:abisee/cnn_dailymail/3.0.0:test"
    assert [e.id for e in data.examples] == ["r0", "r1", "r2"]

    def offline(*a, **k):
        raise ConnectionError("Couldn't reach the hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"cannot load hub dataset .* --data pubmed=PATH"):
        load_task_data(REG["pubmed"], None, limit=2)
