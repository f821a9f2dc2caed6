"""Engine: batching never changes greedy outputs or log-likelihoods; stop strings; seeds."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.engine import Engine, LoglikelihoodRequest, cut_at_stop
from harness.engine.batching import _batches, _pack, greedy_batches, greedy_costs
from harness.options import EngineOptions
from harness.progress import Progress
from harness.prompts import encode_pair
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
    eng = Engine(model, tok, "cpu", 512, batch_size=5)
    batched = eng.generate(ids, spec, Progress(False), "g")
    assert eng.decode_mode == "eager"  # the static-cache greedy loop, not transformers' generate
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
    from harness.prompts import encode_pairs

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


def test_greedy_batches_by_cache_and_prompt_pass_memory(engine_parts):
    # Prompt sizes 100, 50, 30 with 14 new tokens: cache widths 128, 64, 64 slots.
    costs = (10, 1, 0)  # bytes per cache slot, per packed prompt token, per row
    assert greedy_batches([100, 50, 30], 14, costs, 1e9) == [[0, 1, 2]]
    # Two rows of the longest width: 2 * 128 * 10 + 150 = 2,710 bytes; three: 4,020.
    assert greedy_batches([100, 50, 30], 14, costs, 4020) == [[0, 1, 2]]
    assert greedy_batches([100, 50, 30], 14, costs, 4019) == [[0, 1], [2]]
    assert greedy_batches([30, 100, 50], 14, costs, 2709) == [[1], [2, 0]]  # 2 * 640 + 80
    assert greedy_batches([100, 50, 30], 14, costs, 1) == [[0], [1], [2]]  # each alone
    assert greedy_batches([], 14, costs, 1e9) == []
    model, _ = engine_parts
    cfg = model.config
    per_slot, per_token, per_row = greedy_costs(model)  # float32 model
    assert per_slot == 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * \
        (cfg.hidden_size // cfg.num_attention_heads) * 4
    assert per_token > 4 * cfg.hidden_size * 4 and per_row == 4 * cfg.vocab_size


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
    # Greedy decoding calls the decoder itself: inject there.
    decoder, forward, raised = model.model, model.model.forward, []

    def flaky_forward(input_ids=None, **kw):
        if input_ids.shape[0] > 1:
            raised.append(1)
            raise torch.cuda.OutOfMemoryError("injected")
        return forward(input_ids=input_ids, **kw)

    decoder.forward = flaky_forward
    try:
        eng = Engine(model, tok, "cpu", 512, batch_size=5)
        assert eng.generate(ids, spec, Progress(False), "g") == plain
    finally:
        del decoder.forward
    assert raised and eng.backoffs >= 1 and eng.decode_mode == "eager"


def test_single_row_oom_is_a_clear_error(engine_parts):
    from harness.errors import ModelError

    model, tok = engine_parts
    reqs = [LoglikelihoodRequest(*map(tuple, encode_pair(tok, "The", " end")))]
    with pytest.raises(ModelError, match=r"request 0 \(\d+ tokens\) does not fit in GPU memory"):
        Engine(_OomAbove(model, 0), tok, "cpu", 512, batch_size=1).loglikelihood(
            reqs, Progress(False), "l")


LONG = [tok_text * k for k, tok_text in enumerate(
    ["a cohort of patients ", "the river ", "Northwind said ", "in the end "], start=3)]


def choice_groups(tok):
    """Multiple-choice items of varied lengths: every prompt with four continuations, the
    last one longer for each prompt."""
    groups = []
    for k, p in enumerate(PROMPTS + LONG):
        conts = [" the end", " a river in Calder", " yes", " " + "word " * (k + 1)]
        pairs = [encode_pair(tok, p, c) for c in conts]
        groups.append((tuple(pairs[0][0]), [tuple(c) for _, c in pairs]))
    return groups


def _generate_both(model, tok, new_tokens=40, batch_size=3):
    """(static-cache greedy loop, transformers generate) on the same batches."""
    ids = [tok.encode(p) for p in PROMPTS + LONG]
    spec = GenerationSpec(max_new_tokens=new_tokens)
    fast_engine = Engine(model, tok, "cpu", 512, batch_size=batch_size)
    fast = fast_engine.generate(ids, spec, Progress(False), "g")
    assert fast_engine.decode_mode == "eager"
    plain_engine = Engine(model, tok, "cpu", 512, batch_size=batch_size,
                          options=EngineOptions(greedy_loop=False))
    plain = plain_engine.generate(ids, spec, Progress(False), "g")
    assert plain_engine.decode_mode == "generate"
    return fast, plain


def test_fast_greedy_equals_generate_over_many_steps(engine_parts, monkeypatch):
    """40 new tokens: past the every-32-steps EOS check, rows of different prompt lengths in
    one left-padded batch, grouped-query attention (4 query / 2 K/V heads)."""
    model, tok = engine_parts
    assert model.config.num_attention_heads > model.config.num_key_value_heads
    fast, plain = _generate_both(model, tok)
    assert fast == plain
    assert any(len(x) > 40 for x in fast)  # real text came out, not only EOS


def test_fast_greedy_stops_at_eos(engine_parts, monkeypatch):
    """A model whose argmax is EOS after a few tokens: text ends there, as generate's does."""
    model, tok = engine_parts
    import copy

    m = copy.deepcopy(model)
    with torch.no_grad():  # make EOS the likeliest token from every position
        m.lm_head.weight[tok.eos_token_id] = m.lm_head.weight.mean(0) * 0
        m.lm_head.bias = None
        m.model.norm.weight.fill_(1.0)
        m.lm_head.weight[tok.eos_token_id] += 50 * m.model.norm(
            m.model.embed_tokens.weight).mean(0)
    fast, plain = _generate_both(m, tok, new_tokens=70)
    assert fast == plain
    assert min(len(x) for x in fast) < 10  # some rows did end at EOS


def test_fast_greedy_with_adapter_and_eager_attention(plain_lm, tmp_path, monkeypatch):
    from peft import PeftModel

    from tests.conftest import make_adapter

    tok = AutoTokenizer.from_pretrained(plain_lm)
    adapter = make_adapter(plain_lm, tmp_path / "lora", seed=3)
    for impl in ("sdpa", "eager"):
        base = AutoModelForCausalLM.from_pretrained(plain_lm, dtype=torch.float32,
                                                    attn_implementation=impl).eval()
        model = PeftModel.from_pretrained(base, adapter).eval()
        fast, plain = _generate_both(model, tok, new_tokens=20, batch_size=4)
        assert fast == plain, impl
        with model.disable_adapter():
            fast_off, plain_off = _generate_both(model, tok, new_tokens=20)
        assert fast_off == plain_off and fast_off != fast, impl


def test_pack_rows_hold_every_item_once_within_width():
    import random

    rng = random.Random(0)
    lengths = [rng.randint(20, 200) for _ in range(500)]
    rows = _pack(lengths, 512)
    assert sorted(i for r in rows for i in r) == list(range(500))
    assert all(sum(lengths[i] for i in r) <= 512 for r in rows)
    # Best-fit decreasing leaves little room: within 3% of the lower bound on rows.
    assert len(rows) <= -(-sum(lengths) // 512) * 1.03


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_packed_choices_equal_one_row_per_continuation(plain_lm, impl):
    """Items packed several to a row, over several batches, score as lm-eval's one row per
    (context + continuation) does."""
    tok = AutoTokenizer.from_pretrained(plain_lm)
    model = AutoModelForCausalLM.from_pretrained(plain_lm, dtype=torch.float32,
                                                 attn_implementation=impl).eval()
    groups = choice_groups(tok) * 4  # about 1,400 tokens: three 512-wide rows, one per batch
    eng = Engine(model, tok, "cpu", 512, token_budget=600)
    packed = eng.loglikelihood_choices(groups, Progress(False), "mc")
    flat = [LoglikelihoodRequest(ctx, c) for ctx, conts in groups for c in conts]
    single = Engine(model, tok, "cpu", 512, batch_size=1).loglikelihood(flat, Progress(False), "l")
    got = [r for item in packed for r in item]
    assert [r.logprob for r in got] == pytest.approx([r.logprob for r in single], abs=1e-4)
    assert [r.is_greedy for r in got] == [r.is_greedy for r in single]
    assert [r.n_tokens for r in got] == [r.n_tokens for r in single]


def test_encode_many_equals_tokenizer_call(engine_parts):
    """The Rust backend's batch path gives the ids `tokenizer(...)` gives."""
    from harness.prompts import encode_many

    _, tok = engine_parts
    texts = PROMPTS + LONG + ["", "  spaced  out ", "Ünïcode — dashes…", "<s>Hi there"]
    assert encode_many(tok, texts) == [
        tok(t, add_special_tokens=not t.startswith(tok.bos_token or "\0"))["input_ids"]
        for t in texts]


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_segment_layout_equals_masked_rows(plain_lm, impl):
    """Multiple choice as segments of one packed sequence (the CUDA default, flash attention
    there; here sdpa per segment) scores as the masked rows do, over several batches."""
    tok = AutoTokenizer.from_pretrained(plain_lm)
    model = AutoModelForCausalLM.from_pretrained(plain_lm, dtype=torch.float32,
                                                 attn_implementation=impl).eval()
    groups = choice_groups(tok) * 3

    def run(setting):
        from harness.engine.choices import flash_serves

        eng = Engine(model, tok, "cpu", 512, token_budget=600,
                     options=EngineOptions(choices_attention=setting))
        assert flash_serves(eng, model.model) == (setting == "segments")
        return [r for item in eng.loglikelihood_choices(groups, Progress(False), "mc")
                for r in item]

    seg, masked = run("segments"), run("mask")
    assert [r.logprob for r in seg] == pytest.approx([r.logprob for r in masked], abs=1e-4)
    assert [r.is_greedy for r in seg] == [r.is_greedy for r in masked]
    assert [r.n_tokens for r in seg] == [r.n_tokens for r in masked]
    assert model.config._attn_implementation == impl  # restored after the calls
