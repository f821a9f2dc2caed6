"""The two backends on a GPU (`pytest -m gpu tests/gpu`): the harness's engine, with the CUDA
paths it takes in float32 by default (packed multiple-choice rows, the CUDA-graph greedy loop;
the fused kernels and flash segments are half-precision paths, checked in test_gpu_paths),
against `--backend lm-eval` (lm-eval's HFLM model calls) on the same model and token ids.
On an H200, through `harness run` on the tiny test model: all choices and greedy texts
equal, log-likelihoods within 1.4e-5 (bf16: the same choices and texts, log-likelihoods up to
0.33 apart).
"""

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
pytest.importorskip("lm_eval")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from test_gpu_paths import DEVICE, choice_groups, prompts, small_model  # noqa: E402

from harness.engine import Engine, LoglikelihoodRequest  # noqa: E402
from harness.lmeval_backend import LmEvalBackend  # noqa: E402
from harness.options import EngineOptions  # noqa: E402
from harness.progress import Progress  # noqa: E402
from harness.specs import GenerationSpec  # noqa: E402


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from harness import examples
    from harness.tiny import build_tokenizer

    return build_tokenizer(examples.corpus(), tmp_path_factory.mktemp("tok"), vocab_size=2048)


@pytest.fixture(scope="module")
def backends(tok):
    m = small_model(torch.float32)
    return (Engine(m, tok, DEVICE, 4096, batch_size=16, options=EngineOptions()),
            LmEvalBackend(m, tok, DEVICE, 4096, batch_size=16))


def test_choices_agree(tok, backends):
    engine, lm = backends
    groups = choice_groups(tok, 120)
    ours = engine.collect_choices(engine.submit_choices(groups, Progress(False), "c"),
                                  Progress(False), 0)
    theirs = lm.collect_choices(lm.submit_choices(groups, Progress(False), "c"),
                                Progress(False), 0)
    for a, b in zip(ours, theirs, strict=True):
        assert [round(r.logprob, 3) for r in a] == pytest.approx(
            [round(r.logprob, 3) for r in b], abs=2e-3)
        assert max(range(len(a)), key=lambda i: a[i].logprob) == \
            max(range(len(b)), key=lambda i: b[i].logprob)


def test_loglikelihood_agrees(tok, backends):
    engine, lm = backends
    ids = prompts(tok, 24)
    reqs = [LoglikelihoodRequest(tuple(p[:-20]), tuple(p[-20:])) for p in ids]
    ours = engine.loglikelihood(reqs, Progress(False), "l")
    theirs = lm.loglikelihood(reqs, Progress(False), "l")
    for a, b in zip(ours, theirs, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-3)
        assert a.n_tokens == b.n_tokens


def test_greedy_texts_agree(tok, backends):
    engine, lm = backends
    ids = prompts(tok, 32)
    spec = GenerationSpec(max_new_tokens=32)
    ours = engine.generate_detailed(ids, spec, Progress(False), "g")
    theirs = lm.generate_detailed(ids, spec, Progress(False), "g")
    assert engine.decode_mode == "cuda-graph"
    assert [g.text for g in ours] == [g.text for g in theirs]
    assert [g.new_tokens for g in ours] == [g.new_tokens for g in theirs]
