"""Inputs the hostile cases share, built once: a tiny model and adapters (tests/conftest.py),
example data, two scored run folders and a comparison (for gate, leaderboard and compare
cases), and a trained adapter with a checkpoint (for --resume cases)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import examples
from hostile.battery import recipe_text

NEWS_TASK = """name: news_rouge
kind: generation
dataset: {split: test}
fields: {article: article, highlights: highlights}
prompt: "Article: {article}\\nSummary:"
truncate: article
target: highlights
generation: {max_new_tokens: 8}
metrics: [rouge, words]
"""


@dataclass(frozen=True)
class Res:
    tiny_lm: Path
    adapter: Path
    other_base: Path
    data: dict[str, Path]
    tasks_dir: Path
    news: Path            # news rows for news_rouge
    run_a: Path           # a one-model run folder (harness score)
    run_b: Path
    comparison: Path      # harness compare run_a run_b
    trained: Path         # harness train output with a checkpoint
    recipe: Path


@pytest.fixture(scope="session")
def res(tmp_path_factory, tiny_lm, adapter, other_base, example_data) -> Res:
    from harness.cli import main

    root = tmp_path_factory.mktemp("hostile-shared")
    tasks_dir = root / "tasks"
    tasks_dir.mkdir()
    (tasks_dir / "news_rouge.yaml").write_text(NEWS_TASK)
    news = examples.write_jsonl(examples.news(12), root / "news.jsonl")
    runs = []
    for i, seed in enumerate((1, 2)):
        rows = examples.news(12)
        preds = root / f"preds{i}.jsonl"
        examples.write_jsonl([{"id": r["id"], "prediction": " ".join(
            r["article"].split()[seed: seed + 12]), "reference": r["highlights"]} for r in rows],
            preds)
        out = root / f"run{i}"
        assert main(["score", "--task", "news_rouge", "--tasks-dir", str(tasks_dir),
                     "--predictions", str(preds), "--out", str(out), "--bootstrap", "50"]) == 0
        runs.append(out)
    comparison = root / "cmp"
    assert main(["compare", str(runs[0]), str(runs[1]), "--resamples", "50",
                 "--out", str(comparison)]) == 0
    from harness.train.recipe import load_recipe
    from harness.train.trainer import train

    recipe = root / "recipe.yaml"
    recipe.write_text(recipe_text(tiny_lm))
    trained = root / "trained"
    train(load_recipe(recipe, [f"out={trained}"]), {"cnn_dailymail": str(news)})
    return Res(tiny_lm, adapter, other_base, example_data, tasks_dir, news, runs[0], runs[1],
               comparison, trained, recipe)
