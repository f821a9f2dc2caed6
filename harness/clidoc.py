"""docs/cli.md, generated from the argparse parser itself: `python -m harness.clidoc >
docs/cli.md` (`make docs`). A test keeps the file equal to what this writes."""

from __future__ import annotations

import argparse
import os

WIDTH = "100"


def render() -> str:
    from harness.cli import build_parser

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH  # argparse wraps help at the terminal's width
    try:
        parser = build_parser()
        parser.prog = "harness"
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parts = ["# harness command-line reference", "",
                 "Generated from the parser (`make docs`); each command's `--help` says the "
                 "same.", "", "```text", parser.format_help().rstrip(), "```"]
        for name, command in sub.choices.items():
            parts += ["", f"## harness {name}", "", "```text", command.format_help().rstrip(),
                      "```"]
        return "\n".join(parts) + "\n"
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved


if __name__ == "__main__":
    print(render(), end="")
