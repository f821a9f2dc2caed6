"""Results that survive: the store, resume after SIGKILL, keys, determinism, concurrency,
corruption."""

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tests_helpers import strip_report

from harness.cli import main
from harness.store import FILENAME, Store


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.fixture
def rouge_task(tmp_path):
    """cnn_dailymail's prompt scored with ROUGE + words (no BERTScore model needed)."""
    d = tmp_path / "tasks"
    d.mkdir()
    (d / "news.yaml").write_text(
        "name: news\nkind: generation\ndataset: {hub: abisee/cnn_dailymail, split: test}\n"
        "fields: {id: id, article: article, highlights: highlights}\nid_field: id\n"
        "prompt: \"[INST] Summarize the following news article:\\n\\n{article}\\n\\n"
        "Summary: [/INST]\"\ntruncate: article\ntarget: highlights\n"
        "generation: {max_new_tokens: 24}\nmetrics: [rouge, words]\n")
    return d


def default_sigint() -> None:
    """In a child before exec: SIGINT back to its default disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _news_args(base, data, out, cache, tasks_dir, *extra):
    return ["run", "--base", str(base), "--tasks", "news", "--data", f"news={data}",
            "--limit", "40", "--tasks-dir", str(tasks_dir), "--cache-dir", str(cache),
            "--out", str(out), *extra]


def _rows(cache: Path) -> int:
    path = cache / FILENAME
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(path, timeout=5)
        n = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        db.close()
        return n
    except sqlite3.Error:
        return 0


def test_sigkill_then_resume_equals_uninterrupted(tiny_lm, example_data, rouge_task, tmp_path):
    from harness import examples

    data = examples.write_jsonl(examples.news(40), tmp_path / "news.jsonl")
    full = tmp_path / "full"
    assert main(_news_args(tiny_lm, data, full, tmp_path / "cache-full", rouge_task)) == 0

    cache = tmp_path / "cache"
    out = tmp_path / "resumed"
    cmd = [sys.executable, "-m", "harness", *_news_args(tiny_lm, data, out, cache, rouge_task)]
    env = {**os.environ, "HARNESS_STORE_CHUNK": "2", "HARNESS_NO_PROGRESS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while _rows(cache) < 6 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = _rows(cache)
    assert 6 <= stored < 40
    assert not (out / "report.json").exists()          # no half report to read

    assert main(_news_args(tiny_lm, data, out, cache, rouge_task)) == 0
    resumed = _report(out)
    timings = resumed["tasks"]["news"]["timings"]
    assert timings["examples_from_store"] == stored     # nothing lost ...
    assert timings["examples_computed"] == 40 - stored  # ... nothing computed twice
    assert strip_report(resumed) == strip_report(_report(full))
    assert (out / "samples" / "news.jsonl").read_text() == \
        (full / "samples" / "news.jsonl").read_text()


def test_store_keys(tiny_lm, adapter, adapter_b, rouge_task, tmp_path):
    from harness import examples

    data = examples.write_jsonl(examples.news(8), tmp_path / "news.jsonl")
    cache = tmp_path / "cache"

    def run(name, *extra, tasks_dir=rouge_task):
        out = tmp_path / name
        argv = _news_args(tiny_lm, data, out, cache, tasks_dir, *extra)
        argv[argv.index("--limit") + 1] = "8"
        assert main(argv) == 0
        return _report(out)

    def from_store(report):
        runs = report.get("runs", [report])
        return [r["tasks"]["news"]["timings"]["examples_from_store"] for r in runs]

    assert from_store(run("a")) == [0]
    assert from_store(run("b")) == [8]                      # same everything: served
    assert from_store(run("c", "--adapter", str(adapter))) == [0]       # another adapter
    assert from_store(run("d", "--adapter", str(adapter_b))) == [0]
    assert from_store(run("e", "--max-new-tokens", "12")) == [0]        # generation settings
    assert from_store(run("f", "--load-in-4bit")) == [0]                # quantization
    assert from_store(run("g", "--refresh")) == [0]                     # asked to recompute
    # Another template: not served. Only a metric added: served.
    other = tmp_path / "other-tasks"
    other.mkdir()
    yaml_text = (rouge_task / "news.yaml").read_text()
    (other / "news.yaml").write_text(yaml_text.replace("Summarize the", "Summarise the"))
    assert from_store(run("h", tasks_dir=other)) == [0]
    more = tmp_path / "more-metrics"
    more.mkdir()
    (more / "news.yaml").write_text(yaml_text.replace("[rouge, words]", "[rouge, words, bleu]"))
    report = run("i", tasks_dir=more)
    assert from_store(report) == [8]
    assert "bleu" in report["tasks"]["news"]["metrics"]
    assert from_store(run("j", "--no-cache")) == [0]


def test_same_command_twice_gives_same_bytes(tiny_lm, example_data, tmp_path):
    def go(name):
        out = tmp_path / name
        assert main(["run", "--base", str(tiny_lm), "--tasks", "hellaswag", "--data",
                     f"hellaswag={example_data['hellaswag']}", "--no-cache", "--out",
                     str(out)]) == 0
        return out

    a, b = go("a"), go("b")
    ra, rb = _report(a), _report(b)
    assert strip_report(ra) == strip_report(rb)
    text_a = (a / "report.json").read_text()
    assert text_a.index('"created_at"') and list(ra) == sorted(ra)     # sorted keys
    assert (a / "samples" / "hellaswag.jsonl").read_bytes() == \
        (b / "samples" / "hellaswag.jsonl").read_bytes()


def _writer(folder: str, worker: int, n: int) -> None:
    store = Store(Path(folder))
    for i in range(n):
        store.put(f"model-{worker}", "task", "t",
                  [{"example_hash": f"h{i}-{j}", "v": worker} for j in range(5)])
    store.close()


def test_two_writers_at_once(tmp_path):
    import multiprocessing as mp

    Store(tmp_path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 40)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = Store(tmp_path)
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for w in range(2):
        got = store.get(f"model-{w}", "task", [f"h{i}-{j}" for i in range(40) for j in range(5)])
        assert len(got) == 200 and all(r["v"] == w for r in got.values())


@pytest.mark.parametrize("damage", ["garbage", "schema"])
def test_bad_store_is_moved_aside(tmp_path, capsys, damage):
    path = tmp_path / FILENAME
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    else:
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '999')")
        db.commit()
        db.close()
    store = Store(tmp_path)
    err = capsys.readouterr().err
    assert "moved it to" in err and "started a new one" in err
    assert list(tmp_path.glob(f"{FILENAME}.bad-*"))
    store.put("m", "t", "task", [{"example_hash": "x"}])
    assert store.get("m", "t", ["x"]) == {"x": {"example_hash": "x"}}


def test_cache_info_and_prune(tmp_path, capsys):
    store = Store(tmp_path)
    store.put("m1", "t", "news", [{"example_hash": str(i)} for i in range(3)])
    store.put("m2", "t", "hellaswag", [{"example_hash": "a"}])
    store.close()
    assert main(["cache", "info", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "4 results" in out and "m1" in out and "hellaswag" in out
    assert main(["cache", "prune", "--cache-dir", str(tmp_path)]) == 2
    assert main(["cache", "prune", "--model", "m1", "--cache-dir", str(tmp_path)]) == 0
    assert "removed 3 results" in capsys.readouterr().out


def test_ctrl_c_keeps_finished_examples_and_says_how_to_resume(tiny_lm, rouge_task, tmp_path):
    from harness import examples

    data = examples.write_jsonl(examples.news(400), tmp_path / "news.jsonl")
    cache, out = tmp_path / "cache", tmp_path / "out"
    cmd = [sys.executable, "-m", "harness",
           *_news_args(tiny_lm, data, out, cache, rouge_task, "--limit", "400")]
    env = {**os.environ, "HARNESS_STORE_CHUNK": "2", "HARNESS_NO_PROGRESS": "1"}
    # A job started in the background of a non-interactive shell (as CI scripts may run) has
    # SIGINT ignored, and a child Python inherits that and never sees Ctrl-C: give the child
    # the default disposition, as a terminal would.
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_sigint)
    deadline = time.time() + 120
    while _rows(cache) < 4 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, err[-2000:],
                                    (out / "report.json").exists())
    assert "run the same command again to resume" in err
    assert "Traceback" not in err
    assert _rows(cache) >= 4 and not (out / "report.json").exists()


def test_multiple_choice_chunks_pipelined_and_kept_on_interrupt(tiny_lm, example_data, tmp_path,
                                                                 monkeypatch, capsys):
    """The runner queues chunk k + 1 before storing chunk k: an interrupt while queueing chunk
    3 still stores chunks 1 and 2, and the resumed run equals an uninterrupted one."""
    from harness.kinds import multiple_choice

    def run(name, cache=None):
        out = tmp_path / name
        where = ["--cache-dir", str(cache)] if cache else ["--no-cache"]
        code = main(["run", "--base", str(tiny_lm), "--tasks", "hellaswag", "--data",
                     f"hellaswag={example_data['hellaswag']}", "--limit", "20", *where,
                     "--out", str(out)])
        return code, out

    def samples(out):
        return [json.loads(line) for line in (out / "samples" / "hellaswag.jsonl").open()]

    code, whole = run("whole")  # one chunk
    assert code == 0
    monkeypatch.setenv("HARNESS_STORE_CHUNK", "3")
    code, chunked = run("chunked")  # seven chunks, uninterrupted
    assert code == 0
    real_start, calls = multiple_choice.start, []

    def start(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_start(*args, **kwargs)

    monkeypatch.setattr(multiple_choice, "start", start)
    cache = tmp_path / "cache"
    code, out = run("resumed", cache)
    assert code == 130 and _rows(cache) == 6 and not (out / "report.json").exists()
    monkeypatch.setattr(multiple_choice, "start", real_start)
    code, out = run("resumed", cache)
    assert code == 0
    timings = _report(out)["tasks"]["hellaswag"]["timings"]
    assert (timings["examples_from_store"], timings["examples_computed"]) == (6, 14)
    assert strip_report(_report(out)) == strip_report(_report(chunked))
    assert (out / "samples" / "hellaswag.jsonl").read_bytes() == \
        (chunked / "samples" / "hellaswag.jsonl").read_bytes()
    # Chunks pack items into other rows than one call does: float rounding only.
    for a, b in zip(samples(out), samples(whole), strict=True):
        assert a["prediction"]["choice"] == b["prediction"]["choice"]
        assert a["prediction"]["loglikelihoods"] == pytest.approx(
            b["prediction"]["loglikelihoods"], rel=1e-5)


def test_weight_digests_are_remembered_by_file_identity(tmp_path, monkeypatch):
    """The weights' sha256 is computed once per file identity (path, size, times, inode)
    and served from file-hashes.json after; a rewritten file is hashed again even when its
    size and modification time are put back."""
    from harness import fingerprint

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "m"
    folder.mkdir()
    weights = folder / "model.safetensors"
    weights.write_bytes(b"a" * 1000)
    (folder / "notes.txt").write_text("not a weight file")
    want = hashlib.sha256(b"model.safetensors\0" + b"a" * 1000).hexdigest()
    assert fingerprint.hash_files(folder) == want
    cache = tmp_path / "cache" / fingerprint.HASH_CACHE
    entries = json.loads(cache.read_text())
    assert list(entries.values()) == [want]
    remembered = "f" * 64
    cache.write_text(json.dumps({k: remembered for k in entries}))
    assert fingerprint.hash_files(folder) == remembered  # served, not read again
    st = weights.stat()
    weights.write_bytes(b"b" * 1000)
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fingerprint.hash_files(folder) == hashlib.sha256(
        b"model.safetensors\0" + b"b" * 1000).hexdigest()
    other = tmp_path / "n"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"c" * 10)
    stop = threading.Event()
    stop.set()
    assert fingerprint.hash_files(other, stop=stop) == ""  # a failed load stops the hashing
    assert fingerprint.hash_files(other) == hashlib.sha256(
        b"model.safetensors\0" + b"c" * 10).hexdigest()
