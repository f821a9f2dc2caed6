"""Our metric values equal calling rouge-score, sacrebleu and bert-score directly."""

import numpy as np
import pytest

from harness.metrics.bleu import bleu
from harness.metrics.rouge import for_rougelsum, rouge, split_sentences
from harness.metrics.simple import exact_match, words
from harness.stats import summarize_corpus

PREDS = [
    "The cat sat on the mat. It was happy!",
    "Shoplifting was the top crime in Singapore. Cases rose by 4.2 per cent.",
    "patients received the drug for twelve weeks .\nscores fell .",
    "",
    "A completely unrelated sentence about running dogs",
]
REFS = [
    "A cat was sitting on the mat. The cat seemed happy.",
    "Shoplifting was once again the top physical crime in Singapore. It rose 4.2 per cent.",
    "in a trial of patients , the drug lowered scores .\nit was well tolerated .",
    "Something the model failed to say.",
    "Dogs ran in the park. They were running fast.",
]


def test_sentence_split():
    assert split_sentences("One. Two! Three? four") == ["One.", "Two!", "Three?", "four"]
    assert split_sentences('He said "hi." Then left.\nNew line') == ['He said "hi."', "Then left.",
                                                                    "New line"]
    assert for_rougelsum("a. b.") == "a.\nb."


def test_rouge_equals_rouge_score():
    from rouge_score import rouge_scorer

    ours = rouge(PREDS, REFS).per_example
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"],
                                      use_stemmer=True)
    for i, (p, r) in enumerate(zip(PREDS, REFS, strict=True)):
        # rouge1/2/L on the raw texts; rougeLsum on newline-separated sentences, as it requires.
        raw = scorer.score(r, p)
        lsum = scorer.score("\n".join(split_sentences(r)), "\n".join(split_sentences(p)))
        assert ours["rouge1"][i] == raw["rouge1"].fmeasure
        assert ours["rouge2"][i] == raw["rouge2"].fmeasure
        assert ours["rougeL"][i] == raw["rougeL"].fmeasure
        assert ours["rougeLsum"][i] == lsum["rougeLsum"].fmeasure
    # Sentence splitting matters for Lsum: it differs from L on multi-sentence texts.
    assert ours["rougeLsum"][0] != ours["rougeL"][0]


def test_parallel_cached_rouge_equals_plain_rouge_score():
    """Worker processes and memoised stemming change nothing: every value equals rouge-score's
    own scorer on the same texts."""
    from rouge_score import rouge_scorer

    from harness import examples

    papers = examples.papers(80)
    preds = [p["abstract"].replace("patients", "people") for p in papers]
    refs = [p["article"] for p in papers]
    fast = rouge(preds, refs, workers=2).per_example
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"],
                                      use_stemmer=True)
    for i, (p, r) in enumerate(zip(preds, refs, strict=True)):
        ref = scorer.score(for_rougelsum(r), for_rougelsum(p))
        for t in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
            assert fast[t][i] == ref[t].fmeasure


def test_bleu_equals_sacrebleu():
    import sacrebleu

    scores = bleu(PREDS, REFS)
    ref = sacrebleu.corpus_bleu(PREDS, [REFS])
    values = {name: cm.compute(cm.stats.sum(axis=0)) for name, cm in scores.corpus.items()}
    assert values["bleu"] == pytest.approx(ref.score / 100, abs=1e-12)
    for n in range(4):
        assert values[f"bleu_precision_{n + 1}"] == pytest.approx(ref.precisions[n] / 100,
                                                                  abs=1e-12)
    assert values["bleu_brevity_penalty"] == pytest.approx(ref.bp, abs=1e-12)
    assert values["bleu_length_ratio"] == pytest.approx(ref.sys_len / ref.ref_len, abs=1e-12)


def test_bleu_bootstrap_recomputes_from_documents():
    """A resample of documents gives the BLEU sacrebleu computes on those documents."""
    import sacrebleu

    scores = bleu(PREDS, REFS)
    cm = scores.corpus["bleu"]
    idx = [1, 1, 2, 0, 4]
    expected = sacrebleu.corpus_bleu([PREDS[i] for i in idx], [[REFS[i] for i in idx]]).score
    assert cm.compute(cm.stats[idx].sum(axis=0)) == pytest.approx(expected / 100, abs=1e-12)
    value = summarize_corpus(cm.stats, cm.compute, resamples=200, seed=0)
    assert value.ci95[0] <= value.value <= value.ci95[1]


def test_bertscore_equals_bert_score(minilm):
    import bert_score

    from harness.metrics.bertscore import bertscore
    from harness.specs import BertScoreSpec

    ours = bertscore(PREDS, REFS, BertScoreSpec(model=str(minilm), num_layers=6))
    keep = [i for i, p in enumerate(PREDS) if p]
    _, _, f1 = bert_score.score([PREDS[i] for i in keep], [REFS[i] for i in keep],
                                model_type=str(minilm), num_layers=6)
    got = ours.per_example["bertscore_f1"]
    assert np.allclose([got[i] for i in keep], f1.tolist(), atol=1e-6)
    # The empty prediction (index 3) gets bert-score's own value for empty candidates: 0.
    assert got[3] == 0.0


def test_words_and_exact_match():
    assert words(["a b c", ""], ["x y", "z"]).per_example == {"gen_words": [3.0, 0.0],
                                                            "ref_words": [2.0, 1.0]}
    assert exact_match(["The Cat!", "dog"], ["cat", "cat"]).per_example["exact_match"] == [1.0,
                                                                                           0.0]


def test_squad_f1_is_the_official_token_f1():
    """SQuAD v1.1's F1, worked by hand: articles and punctuation go, then token overlap."""
    from harness.metrics.squad_f1 import squad_f1

    got = squad_f1(["The cat sat on the mat.", "", "Paris", "a b"],
                   ["A cat sat", "", "paris!", "c d"]).per_example["squad_f1"]
    # 1: pred {cat, sat, on, mat}, ref {cat, sat}: P 2/4, R 2/2, F1 2/3.
    # 2: both empty after normalising: 1 (the official script's rule). 3: equal: 1. 4: none: 0.
    assert got == pytest.approx([2 / 3, 1.0, 1.0, 0.0])


def test_a_metric_is_one_family_entry(tmp_path):
    """squad_f1 came in as one module and one METRICS entry: task files accept it for
    generation (and refuse it elsewhere), reports show its label, runs score it."""
    from harness.errors import ConfigError
    from harness.metrics import INFO, METRICS
    from harness.registry import discover_tasks
    from harness.report.markdown import metric_label

    assert "squad_f1" in METRICS and INFO["squad_f1"].label == "Token F1 (SQuAD)"
    assert metric_label("squad_f1").startswith("Token F1 (SQuAD)")
    assert list(INFO)[:4] == ["rouge1", "rouge2", "rougeL", "rougeLsum"]  # display order kept
    good = ("name: qa\nkind: generation\ndataset: {split: test}\nfields: {q: q, a: a}\n"
            "prompt: 'Q: {q}\\nA:'\ntarget: a\nmetrics: [squad_f1, exact_match]\n")
    (tmp_path / "qa.yaml").write_text(good)
    assert discover_tasks([tmp_path])["qa"].metrics == ("squad_f1", "exact_match")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "mc.yaml").write_text(
        "name: mc\nkind: multiple_choice\ndataset: {split: test}\nfields: {q: q, c: c, a: a}\n"
        "prompt: '{q}'\nchoices: c\ntarget: a\nmetrics: [squad_f1]\n")
    with pytest.raises(ConfigError, match="metric 'squad_f1' is not available for "
                                          "multiple_choice"):
        discover_tasks([bad])


def test_squad_f1_in_a_run(tiny_lm, tmp_path):
    import json

    from harness.cli import main
    from harness.metrics.squad_f1 import squad_f1

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "qa.yaml").write_text(
        "name: qa\nkind: generation\ndataset: {split: test}\nfields: {q: q, a: a}\n"
        "prompt: 'Q: {q}\\nA:'\ntarget: a\nmetrics: [squad_f1]\n"
        "generation: {max_new_tokens: 6}\n")
    rows = [{"q": f"what is {i} plus {i}?", "a": f"{2 * i}"} for i in range(6)]
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert main(["run", "--base", str(tiny_lm), "--tasks-dir", str(tasks), "--tasks", "qa",
                 "--data", f"qa={data}", "--no-cache", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    block = report["tasks"]["qa"]["metrics"]["squad_f1"]
    samples = [json.loads(x) for x in (out / "samples" / "qa.jsonl").open()]
    want = squad_f1([s["prediction"] for s in samples], [s["reference"] for s in samples])
    assert [s["metrics"]["squad_f1"] for s in samples] == want.per_example["squad_f1"]
    assert block["value"] == pytest.approx(sum(want.per_example["squad_f1"]) / len(samples))
    assert len(block["ci95"]) == 2
    assert report["tasks"]["qa"]["metric_config"]["squad_f1"]["library"].startswith(
        "torchmetrics ")
