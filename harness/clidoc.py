"""docs/cli.md, generated from the argparse parser itself: `python -m harness.clidoc >
docs/cli.md` (`make docs`). A test keeps the file equal to what this writes.
"""

from __future__ import annotations

import argparse
import functools

WIDTH = 100  # help wrapped at this width, whatever the terminal


def render() -> str:
    """docs/cli.md's text, generated from the parser."""
    from harness.cli_parser import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    formatter = functools.partial(argparse.HelpFormatter, width=WIDTH)
    parser.formatter_class = formatter
    parts = ["# harness command-line reference", "",
             "Generated from the parser (`make docs`); each command's `--help` says the same.",
             "", "```text", parser.format_help().rstrip(), "```"]
    for name, command in sub.choices.items():
        command.formatter_class = formatter
        parts += ["", f"## harness {name}", "", "```text", command.format_help().rstrip(),
                  "```"]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(render(), end="")
