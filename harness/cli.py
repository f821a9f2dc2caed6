"""Command line: argparse -> typed specs -> one call -> exit code.

Exit codes: 0 ok, 1 a gate rule failed, 2 bad input or configuration (one line on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.cli_errors import bug_line, interrupted, line_for
from harness.cli_parser import (
    _bert_spec,
    _data,
    _policy,
    _run_spec,
    _task_list,
    build_parser,
)
from harness.distributed import is_main
from harness.env import text as env_text
from harness.errors import EXIT_BUG, EXIT_FAIL, EXIT_OK, EXIT_USAGE, ConfigError


@contextlib.contextmanager
def _tracking(args: argparse.Namespace, job: str, out: Path) -> Iterator[Any]:
    """The trackers of --log-to, opened before any work (a missing package fails first) on
    rank 0 only, closed at the end. A tracker that failed while logging ends the command
    with its error, once the command's own outputs are written.
    """
    from harness.track import TrackerContext, open_trackers

    trackers = open_trackers(args.log_to if is_main() else [],
                             TrackerContext(out=out, name=out.name or job, job=job))
    ok = False
    try:
        yield trackers
        ok = True
    finally:
        trackers.close(ok)
    failure = trackers.failure()
    if failure:
        raise ConfigError(f"{failure}; the results themselves are written in {out}")


def cmd_tasks(args: argparse.Namespace) -> int:
    """`harness tasks`: list the registry's tasks (built-in and --tasks-dir)."""
    from rich.console import Console
    from rich.table import Table

    from harness.registry import discover_tasks, pick

    registry = discover_tasks(args.tasks_dir)
    console = Console()
    if args.action == "show":
        if not args.name:
            raise ConfigError("harness tasks show NAME: give a task name")
        import yaml

        from harness.runner import task_config

        spec = pick(registry, args.name, "task")
        console.print(f"[bold]{spec.name}[/bold]  ({spec.source})", markup=False)
        console.print(yaml.safe_dump(task_config(spec, None), sort_keys=False,
                                     allow_unicode=True), markup=False)
        return EXIT_OK
    table = Table(title="tasks")
    for col in ("name", "kind", "dataset", "metrics", "description"):
        table.add_column(col)
    for spec in registry.values():
        ds = spec.dataset
        where = ds.hub or (f"file {Path(ds.file).name}" if ds.file else "--data PATH")
        table.add_row(spec.name, spec.kind,
                      where + (f" ({ds.config})" if ds.config else "") + f" [{ds.split}]",
                      ", ".join(spec.metrics), spec.description, )
    console.print(table)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """`harness run`: evaluate a base and its adapters on tasks; write the report folder."""
    from harness.registry import discover_tasks
    from harness.report.markdown import render_run
    from harness.report.write import write_report
    from harness.runner import evaluate

    if args.include_base and not args.adapter:
        raise ConfigError("--include-base needs at least one --adapter")
    from harness.track.report import log_report

    spec = _run_spec(args, _task_list(args.tasks), args.include_base)
    with _tracking(args, "run", args.out) as trackers:
        report, samples = evaluate(spec, discover_tasks(args.tasks_dir))
        if not is_main():  # under a launcher, rank 0 writes the one report
            return EXIT_OK
        write_report(args.out, report, render_run, samples)
        print(f"wrote {args.out}/report.md and report.json", file=sys.stderr)
        log_report(trackers, args.out)
    return EXIT_OK


def cmd_score(args: argparse.Namespace) -> int:
    """`harness score`: score a file of predictions on a generation task, no model."""
    from harness.registry import discover_tasks, pick
    from harness.report.markdown import render_run
    from harness.report.write import write_report
    from harness.score import score_predictions

    task = pick(discover_tasks(args.tasks_dir), args.task, "task")
    data = _data(args.data)
    unknown = set(data) - {task.name}
    if unknown:
        raise ConfigError(f"--data names {', '.join(sorted(unknown))}, not --task {task.name}")
    report, records = score_predictions(task, args.predictions, data.get(task.name), args.limit,
                                        _bert_spec(args), args.bootstrap, args.seed,
                                        _policy(args))
    write_report(args.out, report, render_run, {"predictions": {task.name: records}})
    print(f"wrote {args.out}/report.md and report.json", file=sys.stderr)
    return EXIT_OK


def _compare(args: argparse.Namespace) -> str | None:
    """Run the comparison and write it; its Markdown, or None on a rank other than 0."""
    from harness.compare import compare_models, compare_runs, load_run_dir, write_comparison

    general = _task_list(args.general) if args.general else ()
    if args.runs:
        if len(args.runs) != 2:
            raise ConfigError("compare takes two run folders: BEFORE_DIR AFTER_DIR")
        if args.base or args.adapter or args.candidate:
            raise ConfigError("give either two run folders or --base/--adapter (or "
                              "--candidate), not both")
        before, after = load_run_dir(args.runs[0]), load_run_dir(args.runs[1])
        report = compare_runs(before, after, general, args.resamples, args.seed, args.adjust)
        markdown = write_comparison(args.out, report, before, after, None)
    elif args.candidate:
        from harness.compare import DivergenceSpec, compare_two_models
        from harness.registry import discover_tasks

        if not args.base or args.adapter or not args.tasks:
            raise ConfigError("compare --candidate MODEL needs --base and --tasks, and no "
                              "--adapter (it compares two models)")
        tasks = tuple(dict.fromkeys(_task_list(args.tasks) + general))
        spec = _run_spec(args, tasks, include_base=False)
        markdown = compare_two_models(spec, args.candidate, discover_tasks(args.tasks_dir),
                                      general, args.resamples, args.out, args.adjust,
                                      DivergenceSpec(args.text, args.divergence_tokens))
        if not is_main():
            return None
    else:
        from harness.registry import discover_tasks

        if args.text is not None:
            raise ConfigError("--text is for compare --candidate (the divergence's texts)")
        if not args.base or len(args.adapter) != 1 or not args.tasks:
            raise ConfigError("compare needs --base, exactly one --adapter and --tasks "
                              "(or two run folders)")
        tasks = tuple(dict.fromkeys(_task_list(args.tasks) + general))
        spec = _run_spec(args, tasks, include_base=True)
        markdown = compare_models(spec, discover_tasks(args.tasks_dir), general, args.resamples,
                                  args.out, args.adjust)
        if not is_main():
            return None
    return markdown


def cmd_compare(args: argparse.Namespace) -> int:
    """`harness compare`: paired before/after comparison of two runs, an adapter or two models."""
    from harness.track.report import log_report

    with _tracking(args, "compare", args.out) as trackers:
        markdown = _compare(args)
        if markdown is None:
            return EXIT_OK
        print(markdown)
        print(f"wrote {args.out}/report.md, report.json and deltas.png", file=sys.stderr)
        log_report(trackers, args.out)
    return EXIT_OK


def cmd_gate(args: argparse.Namespace) -> int:
    """`harness gate`: check a report against rules; exit 1 when one fails."""
    from harness.gate import evaluate_rules, load_rules, render_verdicts
    from harness.report.write import load_report

    rules = load_rules(args.rule, args.rules)
    report = load_report(args.report)
    verdicts = evaluate_rules(report, rules, args.strict, args.significance)
    print(render_verdicts(verdicts, args.strict, args.significance))
    return EXIT_OK if all(v.passed for v in verdicts) else EXIT_FAIL


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """`harness leaderboard`: rank the models of many reports (Markdown, CSV, JSON, HTML)."""
    import json

    from harness.leaderboard import build_leaderboard, render_leaderboard_csv, render_leaderboard_md
    from harness.report.leaderboard_html import render_leaderboard_html
    from harness.report.write import LEADERBOARD_FILES, finite, write_folder

    board = build_leaderboard(args.reports, args.sort)
    markdown = render_leaderboard_md(board)
    write_folder(args.out, replaces=LEADERBOARD_FILES, files={
        "leaderboard.csv": render_leaderboard_csv(board), "leaderboard.md": markdown,
        "leaderboard.html": render_leaderboard_html(board, args.out),
        "leaderboard.json": json.dumps(finite(board), sort_keys=True, indent=2,
                                       ensure_ascii=False, allow_nan=False) + "\n"})
    print(markdown)
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    """`harness train`: train a (Q)LoRA adapter from a recipe."""
    from harness.train.recipe import load_recipe
    from harness.train.trainer import train

    overrides = list(args.set) + ([f"out={args.out}"] if args.out else []) + \
        ([f"chat_template={args.chat_template}"] if args.chat_template else [])
    spec = load_recipe(args.recipe, overrides)
    data = _data(args.data)
    for key in data:
        if key.split(":")[0] != spec.task or key.split(":")[1:] not in ([], ["eval"]):
            raise ConfigError(f"--data {key}=…: the recipe trains task '{spec.task}'; use "
                              f"--data {spec.task}=TRAIN_FILE and --data {spec.task}:eval=FILE")
    folder = Path(spec.out or Path("adapters") / spec.name)
    with _tracking(args, "train", folder) as trackers:
        out = train(spec, data, resume=args.resume, policy=_policy(args), trackers=trackers)
    if is_main():  # one line under accelerate launch / torchrun
        print(f"wrote adapter to {out} (train_summary.json, train_log.jsonl, loss.png)",
              file=sys.stderr)
    return EXIT_OK


def cmd_cache(args: argparse.Namespace) -> int:
    """`harness cache`: show or prune the result store."""
    from harness.store import Store, default_cache_dir

    folder = args.cache_dir or default_cache_dir()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"cache folder {folder} is not a folder")
    if args.action == "prune" and not (args.all or args.older_than is not None or args.model
                                       or args.task):
        raise ConfigError("cache prune: say what to remove: --older-than DAYS, --model FP, "
                          "--task NAME, or --all")
    store = Store(folder, readonly=True) if args.action == "info" or not \
        (folder / "results.sqlite").exists() else Store(folder)
    try:
        if args.action == "info":
            info = store.info()
            if not info["exists"]:
                print(f"{info['path']}: no result store yet (0 results)")
                return EXIT_OK
            print(f"{info['path']}: {info['results']} results, {info['bytes'] / 2**20:.1f} MiB")
            for g in info["groups"]:
                print(f"  model {g['model']}  {g['task']:<20} {g['results']:>7} results  "
                      f"last written {g['last_written']}")
            return EXIT_OK
        n = store.prune(args.older_than, args.model, args.task)
        print(f"removed {n} results from {store.path}")
        return EXIT_OK
    finally:
        store.close()


def cmd_export(args: argparse.Namespace) -> int:
    """`harness export`: merge an adapter into its base, or write a GGUF, and check it."""
    from harness.export import ExportSpec, describe, describe_gguf, export_gguf, export_merged

    if args.adapter is not None and not args.merge:
        raise ConfigError("export ADAPTER needs --merge (an adapter is exported merged into "
                          "its base)")
    if args.adapter is None and (args.merge or not args.base or not args.gguf):
        raise ConfigError("export needs ADAPTER --merge [--gguf TYPE], or --base MODEL --gguf "
                          "TYPE for a base alone")
    spec = ExportSpec(adapter=args.adapter, out=args.out, base=args.base, dtype=args.dtype,
                      trust_remote_code=args.trust_remote_code, gguf=args.gguf)
    if args.adapter is not None:
        summary = export_merged(spec)
        print(describe(summary, args.out), file=sys.stderr)
    if args.gguf:
        summary = export_gguf(spec)
        print(describe_gguf(summary, args.out), file=sys.stderr)
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    """`harness show`: a report folder's summary, flips and examples in the terminal."""
    from harness.show import ShowOptions, show

    if args.flips is not None and args.example is not None:
        raise ConfigError("show takes --flips or --example, not both")
    show(ShowOptions(folder=args.folder, task=args.task, flips=args.flips,
                     example=args.example))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """`harness demo`: train on project-written news, then compare, on SmolLM2 or a tiny model."""
    from harness.demo import run_demo

    run_demo(args.out, tiny=args.tiny, deploy=args.deploy)
    return EXIT_OK


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # libraries' bars (GGUF loading, lm-eval)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("transformers", "peft", "bitsandbytes", "lm_eval", "datasets", "absl",
                 "gguf"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "transformers" in sys.modules:  # imported before (in-process use): the env var is late
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


COMMANDS = {"tasks": cmd_tasks, "run": cmd_run, "score": cmd_score, "compare": cmd_compare,
            "gate": cmd_gate, "leaderboard": cmd_leaderboard, "train": cmd_train,
            "cache": cmd_cache, "demo": cmd_demo, "export": cmd_export,
            "show": cmd_show}
OUT_COMMANDS = ("run", "score", "compare", "leaderboard", "demo", "export")
def _run(args: argparse.Namespace, debug: bool) -> tuple[int, str | None]:
    """Run the command; (exit code, the one error line or None). A bug, or any error under
    debug, propagates.
    """
    from harness import env
    from harness.report.write import prepare_out, remove_if_empty

    created: list[Path] = []
    ok = False
    try:
        env.check()
        if args.command in OUT_COMMANDS:
            created = prepare_out(args.out)
        code = COMMANDS[args.command](args)
        ok = True
        return code, None
    except KeyboardInterrupt:
        return 130, interrupted(args.command)
    except Exception as err:
        line = line_for(err)
        if debug or line is None:
            raise
        return EXIT_USAGE, f"error: {line}"
    finally:
        if not ok:
            remove_if_empty(created)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure is one stderr line and an exit code (cli_errors)."""
    for stream in (sys.stdout, sys.stderr):  # never fail on printing a name or a path
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    with contextlib.suppress(ValueError):  # SIGTERM (a cancelled CI job) ends like Ctrl-C
        signal.signal(signal.SIGTERM, _terminate)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a bad argument (2, one line)
        return int(exit_.code or 0)
    except KeyboardInterrupt:
        return 130
    _quiet_libraries()
    debug = env_text("HARNESS_DEBUG") == "1"
    try:
        code, message = _run(args, debug)
    except Exception as err:  # an unexpected error: a bug, reported in one line
        if debug:
            raise
        code, message = EXIT_BUG, f"error: {bug_line(err)}"
    if message is not None:
        print(message, file=sys.stderr)
    return code
