"""The CLI end to end on tiny models: run (base, adapters, 4-bit), score, tasks, demo."""

import json
import os
import subprocess
import sys

import pytest

from harness.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr()


def _read(out):
    return json.loads((out / "report.json").read_text())


def test_tasks_list_and_show(capsys):
    code, cap = _run(capsys, "tasks")
    assert code == 0
    for name in ("pubmed", "cnn_dailymail", "medquad", "hellaswag"):
        assert name in cap.out
    code, cap = _run(capsys, "tasks", "show", "cnn_dailymail")
    assert code == 0 and "[INST] Summarize the following news article" in cap.out


def test_run_base_writes_report_samples_and_markdown(tiny_lm, example_data, minilm, tmp_path,
                                                      capsys):
    out = tmp_path / "run"
    code, cap = _run(capsys, "run", "--base", str(tiny_lm), "--tasks", "cnn_dailymail,hellaswag",
                     "--data", f"cnn_dailymail={example_data['cnn_dailymail']}",
                     "--data", f"hellaswag={example_data['hellaswag']}", "--limit", "6",
                     "--max-new-tokens", "8", "--bertscore-model", str(minilm),
                     "--bertscore-layers", "6", "--out", str(out))
    assert code == 0, cap.err
    report = _read(out)
    assert report["schema_version"] == 2 and report["kind"] == "run"
    assert report["model"]["adapter"] is None
    assert len(report["model"]["base"]["weights_sha256"]) == 64
    cnn = report["tasks"]["cnn_dailymail"]
    assert cnn["n"] == 6 and cnn["dataset"]["n"] == 6
    assert cnn["config"]["generation"]["max_new_tokens"] == 8
    for metric in ("rouge1", "rouge2", "rougeL", "rougeLsum", "bertscore_f1", "gen_words",
                   "ref_words"):
        m = cnn["metrics"][metric]
        assert set(m) == {"value", "ci95", "stderr", "n", "ci_method"} and m["n"] == 6
        assert m["ci95"][0] <= m["value"] <= m["ci95"][1]
    assert set(report["tasks"]["hellaswag"]["metrics"]) == {"acc", "acc_norm"}
    lines = (out / "samples" / "cnn_dailymail.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert {"id", "prompt_hash", "prediction", "reference", "metrics"} <= set(first)
    assert first["id"] == "news-0000"
    mc = json.loads((out / "samples" / "hellaswag.jsonl").read_text().splitlines()[0])
    assert len(mc["prediction"]["loglikelihoods"]) == 4
    md = (out / "report.md").read_text()
    assert "### cnn_dailymail" in md and "ROUGE-Lsum (%)" in md and "95% CI" in md
    # report.md is made from report.json alone.
    from harness.report.markdown import render_run

    assert md == render_run(report)


def test_adapters_are_evaluated_in_turn_on_one_base(tiny_lm, adapter, adapter_b, example_data,
                                                    tmp_path, capsys):
    out = tmp_path / "multi"
    code, cap = _run(capsys, "run", "--base", str(tiny_lm), "--adapter", str(adapter),
                     "--adapter", str(adapter_b), "--include-base", "--tasks", "hellaswag",
                     "--data", f"hellaswag={example_data['hellaswag']}", "--limit", "12",
                     "--out", str(out))
    assert code == 0, cap.err
    report = _read(out)
    labels = [r["label"] for r in report["runs"]]
    assert labels == ["base", "lora-a", "lora-b"]
    ids = {r["model"]["id"] for r in report["runs"]}
    assert len(ids) == 3
    lls = []
    for label in labels:
        rec = json.loads((out / "samples" / label / "hellaswag.jsonl").read_text().split("\n")[0])
        lls.append(rec["prediction"]["loglikelihoods"])
    assert lls[0] != lls[1] != lls[2]
    # The base alone (adapter switched off) equals a run of the bare base.
    code, _ = _run(capsys, "run", "--base", str(tiny_lm), "--tasks", "hellaswag", "--data",
                   f"hellaswag={example_data['hellaswag']}", "--limit", "12", "--out",
                   str(tmp_path / "bare"))
    bare = json.loads((tmp_path / "bare" / "samples" / "hellaswag.jsonl").read_text()
                      .split("\n")[0])
    assert bare["prediction"]["loglikelihoods"] == pytest.approx(lls[0], abs=1e-4)
    assert "## Summary" in (out / "report.md").read_text()


def test_adapter_matches_plain_peft(tiny_lm, adapter, example_data, tmp_path, capsys):
    """Un-merged adapter scores equal plain peft's forward on the same input."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "one"
    code, _ = _run(capsys, "run", "--base", str(tiny_lm), "--adapter", str(adapter), "--tasks",
                   "hellaswag", "--data", f"hellaswag={example_data['hellaswag']}", "--limit",
                   "2", "--out", str(out))
    assert code == 0
    rec = json.loads((out / "samples" / "hellaswag.jsonl").read_text().split("\n")[0])
    tok = AutoTokenizer.from_pretrained(tiny_lm)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_lm), adapter)
    from harness.data import load_task_data
    from harness.prompts import encode_pair
    from harness.registry import discover_tasks

    task = discover_tasks()["hellaswag"]
    ex = load_task_data(task, str(example_data["hellaswag"]), 1).examples[0]
    ctx, cont = encode_pair(tok, ex.fields["query"], " " + ex.fields["choices"][0])
    with torch.no_grad():
        logits = model(torch.tensor([ctx + cont])).logits[0]
    logprobs = torch.log_softmax(logits[len(ctx) - 1: -1].float(), -1)
    expected = float(logprobs.gather(1, torch.tensor(cont)[:, None]).sum())
    assert rec["prediction"]["loglikelihoods"][0] == pytest.approx(expected, abs=1e-4)


def test_4bit_on_cpu(tiny_lm, adapter, example_data, minilm, tmp_path, capsys):
    pytest.importorskip("bitsandbytes")
    out = tmp_path / "q4"
    code, cap = _run(capsys, "run", "--base", str(tiny_lm), "--adapter", str(adapter),
                     "--include-base", "--load-in-4bit", "--tasks", "hellaswag,medquad",
                     "--data", f"hellaswag={example_data['hellaswag']}", "--data",
                     f"medquad={example_data['medquad']}", "--limit", "4",
                     "--max-new-tokens", "6", "--bertscore-model", str(minilm),
                     "--bertscore-layers", "6", "--out", str(out))
    assert code == 0, cap.err
    report = _read(out)
    assert all(r["model"]["quantization"] == "4bit" for r in report["runs"])
    assert report["runs"][0]["model"]["id"] != report["runs"][1]["model"]["id"]


def test_score_predictions_by_reference_and_by_id(example_data, tmp_path, capsys):
    preds = tmp_path / "preds.jsonl"
    rows = [json.loads(x) for x in example_data["medquad"].read_text().splitlines()[:5]]
    with preds.open("w") as fh:
        for i, r in enumerate(rows):
            line = {"prediction": r["answer"] if i % 2 else "I do not know."}
            line.update({"reference": r["answer"]} if i < 3 else {"id": str(i)})
            fh.write(json.dumps(line) + "\n")
    med = tmp_path / "medquad.yaml"
    # A user task: medquad's prompt, scored with ROUGE + BLEU only (no BERTScore model needed).
    from harness.registry import discover_tasks

    spec = discover_tasks()["medquad"]
    med.write_text(json.dumps({
        "name": "med_lite", "kind": "generation",
        "dataset": {"hub": spec.dataset.hub, "split": spec.dataset.split},
        "fields": dict(spec.fields), "prompt": spec.prompt, "target": "answer",
        "metrics": ["rouge", "bleu"]}))
    out = tmp_path / "scored"
    code, cap = _run(capsys, "score", "--task", "med_lite", "--tasks-dir", str(tmp_path),
                     "--predictions", str(preds), "--data",
                     f"med_lite={example_data['medquad']}", "--out", str(out))
    assert code == 0, cap.err
    report = _read(out)
    rouge_l = report["tasks"]["med_lite"]["metrics"]["rougeL"]
    from harness.metrics.rouge import rouge

    expected = rouge([("I do not know." if i % 2 == 0 else r["answer"]) for i, r in
                      enumerate(rows)], [r["answer"] for r in rows]).per_example["rougeL"]
    assert rouge_l["value"] == pytest.approx(sum(expected) / 5)
    assert "bleu" in report["tasks"]["med_lite"]["metrics"]


def test_demo_trains_and_compares_offline(tmp_path, capsys, minilm):
    code, cap = _run(capsys, "demo", "--tiny", "--out", str(tmp_path / "demo"))
    assert code == 0, cap.err
    demo = tmp_path / "demo"
    report = _read(demo)
    assert report["kind"] == "comparison" and report["general"] == ["hellaswag"]
    rouge = report["tasks"]["cnn_dailymail"]["metrics"]["rougeL"]
    assert rouge["delta"] > 0.1 and rouge["significant"]
    md = (demo / "report.md").read_text()
    assert "## Forgetting (general tasks)" in md and "| Metric | Base | +Adapter | Δ | 95% CI" in md
    for name in ("deltas.png", "loss.png", "report.json"):
        assert (demo / name).exists()


def test_demo_deploy_trains_exports_and_compares_the_quantised_file(tmp_path, capsys, minilm):
    """Seed 003's path on the tiny model: train, merge + GGUF q4_0, compare merged vs file."""
    import json

    code, cap = _run(capsys, "demo", "--tiny", "--deploy", "--out", str(tmp_path / "dep"))
    assert code == 0, cap.err
    dep = tmp_path / "dep"
    report = _read(dep)
    assert report["mode"] == "models" and report["general"] == ["hellaswag"]
    merged = dep / "work" / "merged"
    exported = json.loads((merged / "export.json").read_text())
    assert exported["kind"] == "merged_adapter" and "q4_0" in exported["gguf"]
    assert (merged / exported["gguf"]["q4_0"]["file"]).is_file()
    assert report["after"]["model"]["base"]["id"].endswith("merged-q4_0.gguf")
    assert report["after"]["model"]["base"]["gguf_file_type"] == "Q4_0"
    assert report["divergence"]["tokens"] > 100 and report["divergence"]["kld_mean"] > 0
    assert "## Divergence (candidate vs base)" in (dep / "report.md").read_text()
    for step in ("1/5", "3/5", "4/5", "5/5"):
        assert step in cap.err


def test_device_auto_shards_with_device_map(tiny_lm, example_data, tmp_path, capsys):
    """--device auto loads with device_map="auto" (here, no GPU: all on the CPU) and gives the
    numbers of a plain CPU run."""
    outs = []
    for device in ("auto", "cpu"):
        out = tmp_path / device
        code, cap = _run(capsys, "run", "--base", str(tiny_lm), "--device", device, "--tasks",
                         "hellaswag", "--data", f"hellaswag={example_data['hellaswag']}",
                         "--limit", "6", "--no-cache", "--out", str(out))
        assert code == 0, cap.err
        outs.append(_read(out)["tasks"]["hellaswag"]["metrics"])
    assert outs[0] == outs[1]


def test_research_qa_perplexity(tiny_lm, tmp_path, capsys):
    """The research_qa task (seed 003): BLEU, ROUGE and perplexity of the reference answer,
    perplexity = exp(total target NLL / total target tokens) from the samples."""
    import math

    from harness import examples

    rows = [{"question": r["question"], "answer": r["answer"],
             "context": "From the handbook." if i % 2 else ""}
            for i, r in enumerate(examples.medical_qa(10))]
    data = examples.write_jsonl(rows, tmp_path / "qa.jsonl")
    out = tmp_path / "qa"
    code, cap = _run(capsys, "run", "--base", str(tiny_lm), "--tasks", "research_qa", "--data",
                     f"research_qa={data}", "--max-new-tokens", "8", "--no-cache", "--out",
                     str(out))
    assert code == 0, cap.err
    metrics = _read(out)["tasks"]["research_qa"]["metrics"]
    assert {"bleu", "rougeL", "perplexity"} <= set(metrics)
    samples = [json.loads(x) for x in (out / "samples" / "research_qa.jsonl").open()]
    nll = sum(s["target_nll"]["nll"] for s in samples)
    tokens = sum(s["target_nll"]["n_tokens"] for s in samples)
    assert metrics["perplexity"]["value"] == pytest.approx(math.exp(nll / tokens), rel=1e-9)
    lo, hi = metrics["perplexity"]["ci95"]
    assert lo <= metrics["perplexity"]["value"] <= hi


def test_run_records_engine_options_and_what_ran(tiny_lm, example_data, minilm, tmp_path,
                                                 capsys):
    """report.json holds the engine options (settings.engine), those that change numbers in
    settings.numerics (the store key), and what the engine did; --compile is gone (one line)."""
    out = tmp_path / "run"
    code, cap = _run(capsys, "run", "--base", str(tiny_lm), "--tasks", "hellaswag,cnn_dailymail",
                     "--data", f"hellaswag={example_data['hellaswag']}", "--data",
                     f"cnn_dailymail={example_data['cnn_dailymail']}", "--limit", "4",
                     "--max-new-tokens", "4", "--bertscore-model", str(minilm),
                     "--bertscore-layers", "6", "--no-cache", "--out", str(out))
    assert code == 0, cap.err
    report = _read(out)
    assert report["settings"]["engine"] == {
        "fused": "auto", "choices_attention": "flash", "greedy_loop": True,
        "decode_attention": "auto", "cuda_graphs": True}
    assert report["settings"]["numerics"]["fused"] == "auto"
    assert "cuda_graphs" not in report["settings"]["numerics"]
    assert report["engine"] == {"decode_mode": "eager", "decode_attention": "sdpa",
                                "fused_kernels": [], "backoffs": 0}
    code, cap = _run(capsys, "run", "--base", str(tiny_lm), "--tasks", "hellaswag", "--compile",
                     "--out", str(tmp_path / "x"))
    assert code == 2 and len(cap.err.strip().splitlines()) == 1 and "--compile" in cap.err


def test_base_only_load_imports_no_peft(tiny_lm, adapter, tmp_path):
    """peft (and bitsandbytes through it) costs ~1 s of imports: only runs with adapters pay."""
    code = (
        "import sys\n"
        "from harness.models import ModelSpec, load_model\n"
        f"lm = load_model(ModelSpec(base={str(tiny_lm)!r}, device='cpu'))\n"
        "print('base', 'peft' in sys.modules, [v.label for v in lm.variants])\n"
        f"lm = load_model(ModelSpec(base={str(tiny_lm)!r}, adapters=({str(adapter)!r},), "
        "device='cpu'))\n"
        "print('adapter', 'peft' in sys.modules, [v.label for v in lm.variants])\n")
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300, check=True).stdout.splitlines()
    assert out == ["base False ['base']", "adapter True ['lora-a']"]
