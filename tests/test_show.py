"""harness show DIR: the summary, --flips and --example, read from report.json and samples;
the flips equal what the samples say."""

import json

import pytest
from tests_helpers import compare_args

from harness.cli import main
from harness.show import flips, mc_margin


@pytest.fixture(scope="module")
def folders(tiny_lm, adapter, example_data, minilm, tmp_path_factory):
    root = tmp_path_factory.mktemp("show")
    common = compare_args(example_data, minilm)
    assert main(["compare", "--base", str(tiny_lm), "--adapter", str(adapter), "--general",
                 "hellaswag", "--resamples", "500", *common, "--out", str(root / "cmp")]) == 0
    assert main(["run", "--base", str(tiny_lm), *common, "--out", str(root / "run")]) == 0
    return root


def _samples(folder, side, task):
    lines = (folder / "samples" / side / f"{task}.jsonl").read_text().splitlines()
    return {r["id"]: r for r in map(json.loads, lines)}


def _show(capsys, *args):
    code = main(["show", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_samples_carry_the_input_shown(folders):
    rec = next(iter(_samples(folders / "cmp", "before", "hellaswag").values()))
    assert rec["input"]["prompt"] and len(rec["input"]["choices"]) == 4
    gen = next(iter(_samples(folders / "cmp", "after", "cnn_dailymail").values()))
    assert "Article" in gen["input"]["prompt"] or len(gen["input"]["prompt"]) > 50


def test_summary_shows_every_metric_of_the_comparison(folders, capsys):
    code, out, _ = _show(capsys, str(folders / "cmp"))
    assert code == 0
    report = json.loads((folders / "cmp" / "report.json").read_text())
    assert "Forgetting" in out
    acc = report["tasks"]["hellaswag"]["metrics"]["acc"]
    assert f"{100 * acc['before']:.2f}" in out and f"{100 * acc['after']:.2f}" in out
    assert "ROUGE-L (%)" in out


def test_flips_are_the_samples_right_to_wrong_first(folders, capsys):
    before = _samples(folders / "cmp", "before", "hellaswag")
    after = _samples(folders / "cmp", "after", "hellaswag")
    right = {i for i, r in before.items() if r["prediction"]["choice"] == r["reference"]}
    now_right = {i for i, r in after.items() if r["prediction"]["choice"] == r["reference"]}
    lost, gained = right - now_right, now_right - right
    rows = flips("multiple_choice", before, after, 100, None)
    changes = [r["change"] for r in rows]
    assert {r["id"] for r in rows if r["change"] == "right → wrong"} == lost
    assert {r["id"] for r in rows if r["change"] == "wrong → right"} == gained
    assert changes == sorted(changes, key=["right → wrong", "wrong → right",
                                           "unchanged"].index)
    unchanged = [abs(r["delta"]) for r in rows if r["change"] == "unchanged"]
    assert unchanged == sorted(unchanged, reverse=True)
    some = rows[0]
    assert some["delta"] == pytest.approx(mc_margin(after[some["id"]]) -
                                          mc_margin(before[some["id"]]))
    code, out, _ = _show(capsys, str(folders / "cmp"), "--flips", "3", "--task", "hellaswag")
    assert code == 0 and out.count("right → wrong") + out.count("wrong → right") + \
        out.count("unchanged") == 3
    for row in rows[:3]:
        assert row["change"] in out


def test_generation_flips_rank_by_the_headline_metric(folders):
    before = _samples(folders / "cmp", "before", "cnn_dailymail")
    after = _samples(folders / "cmp", "after", "cnn_dailymail")
    rows = flips("generation", before, after, 5, "rougeL")
    deltas = {i: after[i]["metrics"]["rougeL"] - before[i]["metrics"]["rougeL"] for i in before}
    top = sorted(deltas.values(), key=abs, reverse=True)[:5]
    assert [abs(r["delta"]) for r in rows] == pytest.approx([abs(d) for d in top])


def test_example_in_full_before_and_after(folders, capsys):
    before = _samples(folders / "cmp", "before", "hellaswag")
    ex_id, rec = next(iter(before.items()))
    code, out, _ = _show(capsys, str(folders / "cmp"), "--example", ex_id, "--task",
                         "hellaswag")
    assert code == 0
    assert rec["input"]["choices"][0][:30] in out.replace("\n", " ") or \
        rec["input"]["choices"][0][:15] in out
    assert f"{rec['prediction']['loglikelihoods'][0]:.3f}" in out
    code, out, _ = _show(capsys, str(folders / "run"), "--example", ex_id)
    assert code == 0 and "hellaswag · example" in out


@pytest.mark.parametrize("args, message", [
    (["--flips", "3"], "--flips needs two models"),
    (["--task", "nope"], "--task nope: not in this report"),
    (["--example", "no-such-id"], "--example no-such-id: no example with that id"),
])
def test_show_errors_are_one_line(folders, capsys, args, message):
    folder = folders / ("run" if args[0] == "--flips" else "cmp")
    code, _, err = _show(capsys, str(folder), *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_show_on_a_folder_without_a_report(tmp_path, capsys):
    code, _, err = _show(capsys, str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_text_that_looks_like_rich_markup_prints_as_is(folders, capsys):
    """Prompts and outputs are data: cnn_dailymail's "[INST] … [/INST]" (and a "[bold]" in a
    prediction) print verbatim, not as console markup (a closing tag once crashed show)."""
    cmp = folders / "cmp"
    path = cmp / "samples" / "after" / "cnn_dailymail.jsonl"
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    first["prediction"] = "[bold]not bold[/bold] [/i]"
    path.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    code, out, err = _show(capsys, str(cmp), "--example", first["id"])
    assert code == 0, err
    assert "[/INST]" in out and "[bold]not bold[/bold] [/i]" in out
    code, out, err = _show(capsys, str(cmp), "--flips", "16", "--task", "cnn_dailymail")
    assert code == 0 and "[INST]" in out, err


@pytest.mark.parametrize("damage, message", [
    (lambda r: r["prediction"].pop("loglikelihoods"), "no choice, log-likelihoods"),
    (lambda r: r["prediction"].update(loglikelihoods=[-1.0, "x", -2.0, -3.0]),
     "log-likelihoods that do not match"),
    (lambda r: r.update(reference=9), "log-likelihoods that do not match"),
    (lambda r: r["metrics"].update(acc="high"), "a per-example metric that is not a number"),
    (lambda r: r.update(input={"prompt": "p", "choices": ["a"]}), "input choices"),
    (lambda r: r.update(input=["p"]), "an input that is not"),
], ids=["no-lls", "text-ll", "gold-out-of-range", "text-metric", "short-choices", "input-list"])
def test_damaged_samples_are_one_line(folders, tmp_path, capsys, damage, message):
    import shutil

    cmp = tmp_path / "cmp"
    shutil.copytree(folders / "cmp", cmp)
    path = cmp / "samples" / "before" / "hellaswag.jsonl"
    lines = path.read_text().splitlines()
    rec = json.loads(lines[2])
    damage(rec)
    lines[2] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    for args in ([], ["--flips"], ["--example", rec["id"]]):
        code, _, err = _show(capsys, str(cmp), *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "record 3" in err and message in err, err
