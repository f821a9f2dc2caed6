"""The command line's parser: argparse types that check each value where it enters (one line,
exit 2, on a bad one), the option groups the commands share, and `build_parser`. cli.py runs
what it parses.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NoReturn

from harness.errors import EXIT_USAGE, ConfigError

if TYPE_CHECKING:
    from harness.policy import CodePolicy
    from harness.specs import BertScoreSpec, ModelSpec, RunSpec

DESCRIPTION = """Command line: argparse -> typed specs -> one call -> exit code.

Exit codes: 0 ok, 1 a gate rule failed, 2 bad input or configuration (one line on stderr).
"""

MAX_RESAMPLES = 1_000_000


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, no usage dump
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _pair(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected TASK=PATH, got '{value}'")
    return name, path


def _integer(low: int, high: int | None, what: str) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (high None: no upper bound)."""
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            n = None
        if n is None or n < low or (high is not None and n > high):
            raise argparse.ArgumentTypeError(f"expected {what}, got '{value}'")
        return n
    return parse


_positive = _integer(1, None, "a positive integer")
_seed = _integer(0, 2**32 - 1, "an integer in 0 .. 2**32 - 1")
_resamples = _integer(1, MAX_RESAMPLES, f"a positive integer, at most {MAX_RESAMPLES:,}")


def _days(value: str) -> float:
    try:
        days = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of days >= 0, got '{value}'") \
            from None
    if not math.isfinite(days) or days < 0:
        raise argparse.ArgumentTypeError(f"expected a number of days >= 0, got '{value}'")
    return days


def _out(value: str) -> Path:
    if not value.strip():
        raise argparse.ArgumentTypeError("give a folder, not an empty name")
    return Path(value)


def _gguf_type(value: str) -> str:
    """--gguf: the types the gguf package writes; K-quants and IQ types name llama.cpp's
    quantiser, which makes them from the f16 file.
    """
    import re

    if value in ("f16", "q8_0", "q4_0"):
        return value
    if re.fullmatch(r"(?i)(q[2-8]_k(_[sml]|_xl)?|iq[1-4]_\w+|q[2-6]_[01]|tq[12]_0|bf16|f32)",
                    value):
        raise argparse.ArgumentTypeError(
            f"'{value}' is not written here: the gguf package quantises f16, q8_0 and q4_0 "
            f"only; for K-quants and IQ types write --gguf f16, then run llama.cpp's "
            f"llama-quantize on that file (e.g. llama-quantize m-f16.gguf m-q4_k_m.gguf "
            f"Q4_K_M)")
    raise argparse.ArgumentTypeError(f"expected f16, q8_0 or q4_0, got '{value}'")


def _batch(value: str) -> int | None:
    return None if value == "auto" else _positive(value)


def _task_list(values: list[str]) -> tuple[str, ...]:
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    return tuple(dict.fromkeys(names))


def _add_common_model(p: argparse.ArgumentParser, base_required: bool = True) -> None:
    p.add_argument("--base", required=base_required, help="hub id or local folder of a causal LM")
    p.add_argument("--adapter", action="append", default=[],
                   help="PEFT adapter folder (repeatable: base loaded once, each in turn)")
    p.add_argument("--include-base", action="store_true",
                   help="with --adapter: also evaluate the base alone")
    q = p.add_mutually_exclusive_group()
    q.add_argument("--load-in-4bit", action="store_true",
                   help="NF4 with double quantization, bf16 compute (bitsandbytes)")
    q.add_argument("--load-in-8bit", action="store_true", help="LLM.int8 (bitsandbytes, CUDA)")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"],
                   default="auto", help="weights dtype (auto: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 …, or auto: shard the model over this "
                   "machine's GPUs (device_map=auto); default cuda when available")
    p.add_argument("--revision", help="hub revision of the base")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow the model repo's own Python code (off by default)")
    p.add_argument("--max-length", type=_positive,
                   help="context length (default: the model config's)")


def _add_eval(p: argparse.ArgumentParser, tasks_required: bool = True) -> None:
    p.add_argument("--tasks", nargs="+", required=tasks_required,
                   help="task names, comma-separated")
    p.add_argument("--data", type=_pair, action="append", default=[],
                   metavar="TASK=PATH", help="local .jsonl/.json/.parquet/.csv for a task")
    p.add_argument("--limit", type=_positive, help="the first N rows of each task")
    p.add_argument("--batch-size", type=_batch, default=None,
                   help="rows per batch, or auto (a token budget; default)")
    p.add_argument("--max-new-tokens", type=_positive,
                   help="override every generation task's max_new_tokens")
    p.add_argument("--chat-template", choices=["auto", "always", "never"],
                   help="prompt every generation task through the model's chat template: auto "
                        "(when the tokenizer has one), always, or never (default: each task's "
                        "own setting)")
    p.add_argument("--seeds", type=_integer(1, 100, "a number of seeds from 1 to 100"),
                   default=1, metavar="K",
                   help="run each sampling generation task (do_sample) with K seeds; its "
                        "intervals are clustered by example (default 1)")
    p.add_argument("--lm-eval-include", type=Path, action="append", default=[],
                   help="folder of lm-eval task YAMLs, for --tasks lm_eval:NAME (repeatable)")
    p.add_argument("--backend", choices=["hf", "lm-eval"], default="hf",
                   help="whose code makes the model calls: hf (the harness's engine; default) "
                        "or lm-eval (lm-evaluation-harness's HFLM, on the same token ids: a "
                        "reference to check figures against)")
    p.add_argument("--cache-dir", type=Path,
                   help="result store folder (default $HARNESS_CACHE or ~/.cache/harness)")
    c = p.add_mutually_exclusive_group()
    c.add_argument("--no-cache", action="store_true",
                   help="neither read nor write the result store")
    c.add_argument("--refresh", action="store_true",
                   help="recompute every example and overwrite what the store holds")


def _add_metric_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bertscore-model", default="roberta-large",
                   help="hub id or local folder (default roberta-large)")
    p.add_argument("--bertscore-layers", type=_positive, default=None,
                   help="layer to use (default 17 for roberta-large, else required)")
    p.add_argument("--bootstrap", type=_resamples, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=_seed, default=0, help="seed for bootstrap and sampling")
    p.add_argument("--tasks-dir", type=Path, action="append", default=[],
                   help="folder of your own task YAMLs (repeatable)")
    _add_allow_code(p)


def _add_log_to(p: argparse.ArgumentParser) -> None:
    from harness.track import TRACKERS

    p.add_argument("--log-to", action="append", default=[], choices=list(TRACKERS),
                   metavar="|".join(TRACKERS),
                   help="also log to an experiment tracker (repeatable): tensorboard (event "
                        "files in OUT/tensorboard), mlflow ($MLFLOW_TRACKING_URI, else a "
                        "SQLite store in OUT), wandb (offline in OUT unless $WANDB_MODE says "
                        "otherwise); each needs its package: pip install 'harness[NAME]'")


def _add_allow_code(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-code", action="store_true",
                   help="let task files run Python code from outside harness (transform: "
                        "module:function, lm-eval's !function); off by default: a tasks "
                        "folder given with it is code")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every command, its flags and their checked types."""
    parser = _Parser(prog="harness", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("tasks", help="list tasks, or `tasks show NAME`")
    t.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    t.add_argument("name", nargs="?")
    t.add_argument("--tasks-dir", type=Path, action="append", default=[])

    r = sub.add_parser("run", help="evaluate a base model and/or adapters on tasks")
    _add_common_model(r)
    _add_eval(r)
    _add_metric_opts(r)
    _add_log_to(r)
    r.add_argument("--out", type=_out, required=True, help="report folder")

    s = sub.add_parser("score", help="score predictions made elsewhere")
    s.add_argument("--task", required=True)
    s.add_argument("--predictions", type=Path, required=True,
                   help="jsonl: prediction + reference, or prediction + id of a task row")
    s.add_argument("--data", type=_pair, action="append", default=[], metavar="TASK=PATH")
    s.add_argument("--limit", type=_positive)
    s.add_argument("--out", type=_out, required=True)
    _add_metric_opts(s)

    c = sub.add_parser("compare", help="before/after: base vs base+adapter, paired CIs")
    c.add_argument("runs", nargs="*", type=Path, metavar="RUN_DIR",
                   help="BEFORE_DIR AFTER_DIR: compare two finished one-model runs")
    _add_common_model(c, base_required=False)
    _add_eval(c, tasks_required=False)
    _add_metric_opts(c)
    c.add_argument("--general", nargs="+", default=[],
                   help="general tasks that form the forgetting set (comma-separated)")
    c.add_argument("--resamples", type=_resamples, default=10_000,
                   help="bootstrap resamples for the deltas of corpus metrics (BLEU, perplexity)")
    c.add_argument("--candidate", metavar="MODEL",
                   help="compare two models instead of base vs adapter: MODEL (a folder, hub "
                        "id or .gguf file, e.g. a merged export or its quantised GGUF) against "
                        "--base, with a divergence section (KL divergence, same top token, "
                        "perplexity ratio)")
    c.add_argument("--text", type=Path, metavar="FILE",
                   help="--candidate: texts for the divergence (.jsonl with a \"text\" field, "
                        "or plain text, blank-line separated; default: the tasks' prompts)")
    c.add_argument("--divergence-tokens", type=_integer(1, 10_000_000, "a number of tokens"),
                   default=16_384, metavar="N",
                   help="--candidate: at most N predicted tokens for the divergence")
    c.add_argument("--adjust", choices=["holm", "bh", "none"], default="holm",
                   help="multiple-comparison adjustment across the target cells and across the "
                        "forgetting cells: Holm (family-wise, default), Benjamini-Hochberg "
                        "(false discovery rate) or none")
    _add_log_to(c)
    c.add_argument("--out", type=_out, required=True)

    g = sub.add_parser("gate", help="check rules on a report: exit 0 pass, 1 fail, 2 bad input")
    g.add_argument("report", type=Path, help="report.json or its folder")
    g.add_argument("--rule", action="append", default=[],
                   help="TASK.METRIC[.delta|.before|.after|.value|.mde|.p|.p_adjusted] OP NUMBER "
                        "(repeatable)")
    g.add_argument("--rules", type=Path, action="append", default=[],
                   help="YAML file with `rules: [..]`")
    g.add_argument("--strict", action="store_true", help="the rule must hold over the whole CI")
    g.add_argument("--significance", choices=["raw", "adjusted"], default="raw",
                   help="comparisons: which significance a violation needs before a delta "
                        "rule fails: the cell's own test (raw, default) or after the report's "
                        "multiple-comparison adjustment")

    lb = sub.add_parser("leaderboard", help="one ranked table over many reports")
    lb.add_argument("reports", nargs="+", type=Path, help="report.json files or folders")
    lb.add_argument("--sort", help="TASK.METRIC to rank by (default: the first column)")
    lb.add_argument("--out", type=_out, required=True)

    tr = sub.add_parser("train", help="train a LoRA/QLoRA adapter from a recipe YAML")
    tr.add_argument("recipe", type=Path, help="recipe YAML (see adapters/)")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe field, e.g. training.max_steps=50 (repeatable)")
    tr.add_argument("--data", action="append", default=[], type=_pair, metavar="TASK[:eval]=PATH",
                    help="local training file for the task (TASK:eval=PATH for the eval rows)")
    tr.add_argument("--out", type=_out, help="output folder (default adapters/<recipe name>)")
    tr.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    tr.add_argument("--chat-template", choices=["auto", "always", "never"],
                    help="as on run: train on the prompts evaluation will see (same as --set "
                         "chat_template=MODE)")
    _add_allow_code(tr)
    _add_log_to(tr)

    ex = sub.add_parser("export", help="merge a LoRA adapter into its base (a plain "
                        "transformers folder) and/or write a GGUF file")
    ex.add_argument("adapter", type=Path, nargs="?",
                    help="the adapter folder (harness train's --out); leave out with --base "
                         "B --gguf T to convert a base alone")
    ex.add_argument("--merge", action="store_true",
                    help="merge the adapter into its base and write a transformers folder")
    ex.add_argument("--gguf", type=_gguf_type, metavar="f16|q8_0|q4_0",
                    help="also (or, for a base alone, only) write a GGUF file of this type, "
                         "checked against the model it came from")
    ex.add_argument("--base", help="the base to merge into (default: the one the adapter's "
                                   "recipe or adapter_config.json names), or to convert")
    ex.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16"],
                    default="auto", help="weights of the merged model (auto: the base "
                                         "config's 16-bit type, else float32)")
    ex.add_argument("--trust-remote-code", action="store_true")
    ex.add_argument("--out", type=_out, required=True)

    ca = sub.add_parser("cache", help="show or trim the per-example result store")
    ca.add_argument("action", choices=["info", "prune"])
    ca.add_argument("--cache-dir", type=Path)
    ca.add_argument("--older-than", type=_days, metavar="DAYS", help="prune: results older")
    ca.add_argument("--model", help="prune: one model fingerprint id")
    ca.add_argument("--task", help="prune: one task")
    ca.add_argument("--all", action="store_true", help="prune: everything")

    sh = sub.add_parser("show", help="a run or comparison folder in the terminal: summary, "
                        "the examples that flipped, one example in full")
    sh.add_argument("folder", type=Path, metavar="DIR")
    sh.add_argument("--task", help="one task")
    sh.add_argument("--flips", type=_positive, nargs="?", const=10, metavar="N",
                    help="the N examples per task that changed most (default 10): right → "
                         "wrong first, then wrong → right, then the largest moves")
    sh.add_argument("--example", metavar="ID", help="one example in full, before and after")

    d = sub.add_parser("demo", help="offline end-to-end demo: train an adapter on "
                       "SmolLM2-135M, then compare it with its base")
    d.add_argument("--out", type=_out, default=Path("reports/demo"))
    d.add_argument("--tiny", action="store_true",
                   help="the same story in seconds on a tiny random model")
    d.add_argument("--deploy", action="store_true",
                   help="seed 003's path instead: train, merge and export to GGUF q4_0, then "
                        "compare the merged model with its q4_0 file")
    return parser


# -- parsed arguments to typed specs ---------------------------------------------------------
def _cache_dir(args: argparse.Namespace) -> Path | None:
    from harness.store import default_cache_dir

    return None if args.no_cache else (args.cache_dir or default_cache_dir())


def _data(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """--data TASK=PATH pairs as a mapping; a task given twice is an error, not last-wins."""
    data: dict[str, str] = {}
    for name, path in pairs:
        if name in data:
            raise ConfigError(f"--data {name}=… is given twice ({data[name]} and {path}); "
                              f"give one file per task")
        data[name] = path
    return data


def _policy(args: argparse.Namespace) -> CodePolicy:
    from harness.policy import load_policy

    return load_policy(getattr(args, "allow_code", False))


def _bert_spec(args: argparse.Namespace) -> BertScoreSpec:
    from harness.specs import BertScoreSpec

    layers = args.bertscore_layers
    if layers is None:
        if args.bertscore_model != "roberta-large":
            raise ConfigError(f"--bertscore-model {args.bertscore_model}: give its layer with "
                              f"--bertscore-layers N")
        layers = 17
    return BertScoreSpec(model=args.bertscore_model, num_layers=layers)


def _model_spec(args: argparse.Namespace, include_base: bool) -> ModelSpec:
    from harness.specs import ModelSpec

    quant: Literal["none", "4bit", "8bit"] = \
        "4bit" if args.load_in_4bit else "8bit" if args.load_in_8bit else "none"
    return ModelSpec(base=args.base, adapters=tuple(args.adapter), include_base=include_base,
                     quantization=quant, dtype=args.dtype, device=args.device,
                     revision=args.revision, trust_remote_code=args.trust_remote_code,
                     max_length=args.max_length)


def _run_spec(args: argparse.Namespace, tasks: tuple[str, ...], include_base: bool,
              ) -> RunSpec:
    from harness.options import EngineOptions
    from harness.specs import RunSpec

    return RunSpec(model=_model_spec(args, include_base), tasks=tasks,
                   data=tuple(_data(args.data).items()), limit=args.limit,
                   batch_size=args.batch_size, engine=EngineOptions.from_env(),
                   max_new_tokens=args.max_new_tokens, bertscore=_bert_spec(args),
                   bootstrap=args.bootstrap, seed=args.seed, cache_dir=_cache_dir(args),
                   refresh=args.refresh, lm_eval_include=tuple(args.lm_eval_include),
                   code=_policy(args), chat_template=args.chat_template, seeds=args.seeds,
                   backend=args.backend)
