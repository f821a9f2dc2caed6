"""Safety rules on the package source: safe YAML, no pickle on user files, no eval/exec."""

import re
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "harness"


def _code():
    for path in sorted(SOURCE.rglob("*.py")):
        yield path, path.read_text()


def test_yaml_is_safe_loaded_only():
    for path, text in _code():
        assert not re.search(r"yaml\.load\(", text), path
        assert "yaml.unsafe_load" not in text and "yaml.full_load" not in text, path


def test_no_pickle_and_weights_only_torch_load():
    for path, text in _code():
        assert "import pickle" not in text and "pickle.load" not in text, path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)


def test_no_eval_or_exec():
    for path, text in _code():
        assert not re.search(r"(?<![\w.])(eval|exec)\(", text), path


def test_remote_code_is_off_by_default():
    from harness.specs import ModelSpec
    from harness.train.recipe import TrainSpec

    assert ModelSpec(base="x").trust_remote_code is False
    assert TrainSpec.__dataclass_fields__["trust_remote_code"].default is False


def test_templates_cannot_reach_attributes():
    """Only {name} is substituted: {a.__class__} or {a[0]} stay literal text."""
    from harness.prompts import render

    assert render("{a.__class__} {a[0]} {a}", {"a": "x"}) == "{a.__class__} {a[0]} x"
