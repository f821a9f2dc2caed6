"""Engine: batching never changes greedy outputs or log-likelihoods; stop strings; seeds."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.engine import Engine, LoglikelihoodRequest, _batches, cut_at_stop, encode_pair
from harness.progress import Progress
from harness.specs import GenerationSpec

PROMPTS = ["Northwind will open a new factory in Calder", "What are the symptoms of river flu ?",
           "in a trial of", "The", "Local leaders in Harrow welcomed the plan , saying that the"]


@pytest.fixture(scope="module")
def engine_parts(plain_lm):
    model = AutoModelForCausalLM.from_pretrained(plain_lm, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(plain_lm)


def test_batched_greedy_equals_one_at_a_time(engine_parts):
    model, tok = engine_parts
    ids = [tok.encode(p) for p in PROMPTS]
    spec = GenerationSpec(max_new_tokens=12)
    batched = Engine(model, tok, "cpu", 512, batch_size=5).generate(ids, spec, Progress(False),
                                                                     "g")
    single = Engine(model, tok, "cpu", 512, batch_size=1).generate(ids, spec, Progress(False),
                                                                    "g")
    assert batched == single
    # And equal to plain transformers generate, one prompt at a time.
    for p, got in zip(ids, single, strict=True):
        out = model.generate(torch.tensor([p]), max_new_tokens=12, do_sample=False,
                             pad_token_id=tok.pad_token_id)
        assert got == tok.decode(out[0, len(p):], skip_special_tokens=True).strip()


def test_sampling_is_seeded(engine_parts):
    model, tok = engine_parts
    ids = [tok.encode(p) for p in PROMPTS]
    spec = GenerationSpec(max_new_tokens=8, do_sample=True, temperature=1.0, seed=7)
    eng = Engine(model, tok, "cpu", 512, batch_size=2)
    assert eng.generate(ids, spec, Progress(False), "s") == eng.generate(ids, spec,
                                                                         Progress(False), "s")


def test_loglikelihood_independent_of_batching(engine_parts):
    model, tok = engine_parts
    reqs = [LoglikelihoodRequest(*map(tuple, encode_pair(tok, p, " the end"))) for p in PROMPTS]
    a = Engine(model, tok, "cpu", 512, batch_size=1).loglikelihood(reqs, Progress(False), "l")
    b = Engine(model, tok, "cpu", 512, batch_size=None, token_budget=64).loglikelihood(
        reqs, Progress(False), "l")
    assert [r.logprob for r in a] == pytest.approx([r.logprob for r in b], abs=1e-4)
    assert [r.n_tokens for r in a] == [len(r.continuation) for r in reqs]


def test_encode_pairs_equals_encode_pair(engine_parts):
    from harness.engine import encode_pairs

    _, tok = engine_parts
    pairs = [(p, " the end") for p in PROMPTS] + [("Question: ", "yes"), ("<s>Hi", " there")]
    assert encode_pairs(tok, pairs) == [encode_pair(tok, c, x) for c, x in pairs]


def test_encode_pair_moves_trailing_space():
    class Tok:
        bos_token = None

        def encode(self, text, add_special_tokens=True):
            return [ord(c) for c in text]

        def __call__(self, texts, add_special_tokens=True):  # the batched interface
            return {"input_ids": [self.encode(t) for t in texts]}

    ctx, cont = encode_pair(Tok(), "Question: ", "yes")
    assert ctx == [ord(c) for c in "Question:"] and cont == [ord(c) for c in " yes"]


def test_batches_by_token_budget_sorted_longest_first():
    batches = _batches([5, 50, 10, 40], batch_size=None, budget=100)
    assert batches == [[1, 3], [2, 0]]
    assert _batches([1, 2, 3], batch_size=2, budget=0) == [[2, 1], [0]]


def test_cut_at_stop():
    assert cut_at_stop(" answer.\nQuestion: next", ["\nQuestion:"]) == "answer."


class _OomAbove:
    """Wraps a model: raises CUDA out-of-memory for batches of more than `limit` rows."""

    def __init__(self, model, limit):
        self.model, self.limit, self.raised = model, limit, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, input_ids, **kw):
        if input_ids.shape[0] > self.limit:
            self.raised += 1
            raise torch.cuda.OutOfMemoryError("injected")
        return self.model(input_ids=input_ids, **kw)

    def generate(self, input_ids, **kw):
        if input_ids.shape[0] > self.limit:
            self.raised += 1
            raise torch.cuda.OutOfMemoryError("injected")
        return self.model.generate(input_ids=input_ids, **kw)


def test_oom_backoff_gives_same_results(engine_parts):
    model, tok = engine_parts
    reqs = [LoglikelihoodRequest(*map(tuple, encode_pair(tok, p, " the end"))) for p in PROMPTS]
    clean = Engine(model, tok, "cpu", 512, batch_size=5).loglikelihood(reqs, Progress(False), "l")
    flaky = _OomAbove(model, limit=2)
    eng = Engine(flaky, tok, "cpu", 512, batch_size=5)
    backed = eng.loglikelihood(reqs, Progress(False), "l")
    assert flaky.raised >= 1 and eng.backoffs >= 1 and eng.batch_size <= 2
    assert [r.logprob for r in backed] == pytest.approx([r.logprob for r in clean], abs=1e-4)
    ids = [tok.encode(p) for p in PROMPTS]
    spec = GenerationSpec(max_new_tokens=6)
    plain = Engine(model, tok, "cpu", 512, batch_size=5).generate(ids, spec, Progress(False), "g")
    assert Engine(_OomAbove(model, 1), tok, "cpu", 512, batch_size=5).generate(
        ids, spec, Progress(False), "g") == plain


def test_single_row_oom_is_a_clear_error(engine_parts):
    from harness.errors import ModelError

    model, tok = engine_parts
    reqs = [LoglikelihoodRequest(*map(tuple, encode_pair(tok, "The", " end")))]
    with pytest.raises(ModelError, match=r"request 0 \(\d+ tokens\) does not fit in GPU memory"):
        Engine(_OomAbove(model, 0), tok, "cpu", 512, batch_size=1).loglikelihood(
            reqs, Progress(False), "l")
