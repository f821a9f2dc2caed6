"""divergence.check_same_tokenizer: the same token for every shared id and the same ids for a
probe text; extra tokens past the shorter vocabulary only as added tokens or GGUF padding."""

import pytest

from harness.divergence import check_same_tokenizer
from harness.errors import ModelError


class Tok:
    bos_token = None

    def __init__(self, vocab, added=(), split_digits=False):
        self.vocab = dict(vocab)
        self.added_tokens_decoder = {self.vocab[t]: t for t in added}
        self.split_digits = split_digits

    def get_vocab(self):
        return dict(self.vocab)

    def __len__(self):
        return len(self.vocab)

    def encode(self, text, add_special_tokens=True):
        return [ord(c) % 7 if self.split_digits and c.isdigit() else ord(c) % 5 for c in text]


BASE = {f"t{i}": i for i in range(10)}


def test_extra_added_tokens_and_gguf_padding_are_allowed():
    padded = {**BASE, "[PAD10]": 10, "[PAD11]": 11, "<|endoftext|>": 12}
    check_same_tokenizer(Tok(BASE), Tok(padded, added=["<|endoftext|>"]), ("a", "b"))


@pytest.mark.parametrize("other", [
    Tok({**BASE, "word": 10}),                      # an extra ordinary token
    Tok({**BASE, "[PAD11]": 10}),                   # padding named for another id
    Tok({**{f"t{i}": i for i in range(9)}, "x": 9}),  # a shared id with another token
    Tok(BASE, split_digits=True),                   # other ids for the same text
], ids=["extra-token", "misnamed-padding", "other-token", "other-split"])
def test_other_vocabularies_are_refused(other):
    with pytest.raises(ModelError, match="do not share a tokenizer"):
        check_same_tokenizer(Tok(BASE), other, ("a", "b"))
