"""docs/cli.md is what the parser says (regenerate with `make docs`)."""

from pathlib import Path

from harness.clidoc import render


def test_cli_reference_is_current():
    doc = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
    assert doc.read_text() == render(), "docs/cli.md is stale: run `make docs`"
    assert "## harness compare" in doc.read_text() and "--log-to" in doc.read_text()
