"""Parallel data: aligned files, Multi30k, the length filter, token-count batches."""

import numpy as np
import pytest

from chalklm.data.parallel import (
    PairBatches,
    SpecialIds,
    encode_pairs,
    load_multi30k,
    multi30k_files,
    pad_rows,
    read_parallel,
    train_tokenizer,
)
from chalklm.errors import DataError, TokenizerError
from chalklm.tokenizers import BPETokenizer

PAIRS = [("ein Hund", "a dog"), ("eine Katze", "a cat"), ("ein Mann fährt Rad", "a man rides"),
         ("zwei Hunde laufen schnell", "two dogs run fast"), ("ja", "yes"),
         ("ein sehr langer Satz mit vielen Wörtern darin", "a very long sentence with words")]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(PAIRS * 3, vocab_size=300, progress=False)


def test_misaligned_files_are_an_error_naming_both_counts(tmp_path):
    (tmp_path / "a.de").write_text("eins\nzwei\ndrei\n", encoding="utf-8")
    (tmp_path / "a.en").write_text("one\ntwo\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"a\.de has 3 lines but .*a\.en has 2"):
        read_parallel(tmp_path / "a.de", tmp_path / "a.en")
    (tmp_path / "a.en").write_text("one\ntwo\nthree\n", encoding="utf-8")
    assert read_parallel(tmp_path / "a.de", tmp_path / "a.en")[2] == ("drei", "three")


def test_multi30k_splits_load_aligned():
    val = load_multi30k("val")
    assert len(val) == 1014
    assert val[0][0].startswith("Eine Gruppe von Männern")
    assert val[0][1].startswith("A group of men")
    with pytest.raises(DataError, match="no split"):
        multi30k_files("dev")
    with pytest.raises(DataError, match="no language 'fr'"):
        multi30k_files("val", "fr", "en")


def test_tokenizer_has_the_three_specials_and_rows_are_framed(tokenizer):
    ids = SpecialIds.of(tokenizer)
    assert len({ids.pad, ids.bos, ids.eos}) == 3
    enc = encode_pairs(tokenizer, PAIRS, max_len=64)
    assert len(enc) == len(PAIRS) and enc.dropped == 0
    assert enc.src[0][-1] == ids.eos and ids.bos not in enc.src[0]
    assert enc.tgt[0][0] == ids.bos and enc.tgt[0][-1] == ids.eos
    assert tokenizer.decode(enc.src[0][:-1]) == "ein Hund"
    assert tokenizer.decode(enc.tgt[3][1:-1]) == "two dogs run fast"
    with pytest.raises(TokenizerError, match="<pad>"):
        SpecialIds.of(BPETokenizer.train("some text here", 260, progress=False))


def test_length_filter_drops_long_and_empty_pairs(tokenizer):
    enc = encode_pairs(tokenizer, PAIRS + [("", "empty source")], max_len=8)
    longest = max(len(p) for p in enc.src + enc.tgt)
    assert longest <= 9  # tgt rows hold <s> too: tgt_in and tgt_out are each <= max_len
    assert enc.dropped >= 2  # the long sentence and the empty one
    with pytest.raises(DataError, match="no pair is left"):
        encode_pairs(tokenizer, PAIRS, max_len=1)


def test_token_batches_respect_the_budget_and_cover_every_pair_once_per_epoch(tokenizer):
    pairs = [(f"{s} {i}", f"{t} {i}") for i in range(40) for s, t in PAIRS]
    enc = encode_pairs(tokenizer, pairs, max_len=64)
    ids = SpecialIds.of(tokenizer)
    data = PairBatches(enc, ids.pad)
    budget = 120
    epoch = data.epoch(budget, seed=3, epoch=0)
    seen = np.sort(np.concatenate(epoch))
    np.testing.assert_array_equal(seen, np.arange(len(enc)))
    for i in range(len(epoch)):
        (src, tgt_in), tgt_out = data.batch(budget, 3, i)
        assert src.shape[0] * max(src.shape[1], tgt_in.shape[1]) <= budget
        assert tgt_in.shape == tgt_out.shape
        assert (tgt_in[:, 0] == ids.bos).all()
        real = tgt_in[:, 1:] != ids.pad  # tgt_in is tgt_out shifted right by one
        np.testing.assert_array_equal(tgt_in[:, 1:][real], tgt_out[:, :-1][real])
    # bucketing: a batch holds pairs of similar length, so it is mostly not padding
    padded = sum(data.batch(budget, 3, i)[1].size for i in range(len(epoch)))
    assert len(data) / padded > 0.8
    # reproducible from (seed, index); the next epoch is drawn in another order
    first = data.batch(budget, 3, 5)[1]
    data.batch(budget, 3, len(epoch) + 2)
    np.testing.assert_array_equal(PairBatches(enc, ids.pad).batch(budget, 3, 5)[1], first)
    assert [len(b) for b in data.epoch(budget, 3, 1)] != [len(b) for b in epoch]
    assert sum(b[1].shape[0] for b in data.sequential(budget)) == len(enc)


def test_a_pair_too_long_for_the_budget_is_a_clear_error(tokenizer):
    data = PairBatches(encode_pairs(tokenizer, PAIRS, max_len=64), 0)
    with pytest.raises(DataError, match="does not fit in a batch of 4 tokens"):
        data.batch(4, 0, 0)


def test_pad_rows_fills_on_the_right():
    out = pad_rows([np.array([5, 6, 7]), np.array([8])], pad_id=0)
    np.testing.assert_array_equal(out, [[5, 6, 7], [8, 0, 0]])


def test_bucketing_by_the_longer_side_covers_every_pair_with_less_padding(tokenizer):
    """The trainer's batches (BucketedPairs): every pair once an epoch, within budget,
    reproducible, and no more padded cells (source + target) than PairBatches'."""
    from chalklm.translation.training import BucketedPairs

    rng = np.random.default_rng(0)
    words = "ein Hund eine Katze Mann fährt Rad zwei laufen schnell sehr langer Satz".split()
    lengths = rng.integers(1, 12, 300)  # a translation about as long as its source
    pairs = [(" ".join(rng.choice(words, n)), " ".join(rng.choice(words, n + rng.integers(3))))
             for n in lengths]
    enc = encode_pairs(tokenizer, pairs, max_len=64)
    ids = SpecialIds.of(tokenizer)
    budget = 200

    def cells(data):
        batches = [data.batch(budget, 1, i) for i in range(len(data.epoch(budget, 1, 0)))]
        for (src, tgt_in), _ in batches:
            assert src.shape[0] * max(src.shape[1], tgt_in.shape[1]) <= budget
        return sum(src.size + tgt_in.size for (src, tgt_in), _ in batches)

    data = BucketedPairs(enc, ids.pad)
    seen = np.sort(np.concatenate(data.epoch(budget, 1, 0)))
    np.testing.assert_array_equal(seen, np.arange(len(enc)))
    assert cells(data) <= cells(PairBatches(enc, ids.pad))
    np.testing.assert_array_equal(BucketedPairs(enc, ids.pad).batch(budget, 1, 4)[1],
                                  data.batch(budget, 1, 4)[1])
