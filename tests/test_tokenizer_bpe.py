"""BPETokenizer on its own: training, encoding, decoding, special tokens, the JSON file."""

import json
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalklm.errors import TokenizerError
from chalklm.tokenizers import BPETokenizer, load_tokenizer
from chalklm.tokenizers.bpe_merge import merge_long, merge_short
from chalklm.tokenizers.patterns import PATTERNS, compile_pattern

EVERYTHING = r"[\s\S]+"  # one chunk: the whole text, as minbpe's BasicTokenizer


@pytest.fixture(scope="module")
def tok(shakespeare) -> BPETokenizer:
    return BPETokenizer.train(
        shakespeare[:200_000] + "a" * 300 + " " * 300,
        1024,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        progress=False,
    )


def naive_merges(text, num_merges, pattern, min_frequency=2):
    """minbpe's recount-everything loop, with chalklm's tie-break (smallest pair)."""
    chunks = [list(c.encode("utf-8")) for c in compile_pattern(pattern).findall(text)]
    merges = []
    for z in range(256, 256 + num_merges):
        counts = Counter(p for ids in chunks for p in zip(ids, ids[1:]))
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        if counts[best] < min_frequency:
            break
        merges.append(best)
        for k, ids in enumerate(chunks):
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == best:
                    out.append(z)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            chunks[k] = out
    return merges


def test_minbpe_published_example():
    tok = BPETokenizer.train("aaabdaaabac", 256 + 3, pattern=EVERYTHING, progress=False)
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.merges == [(97, 97), (97, 98), (256, 257)]
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"


def test_incremental_training_equals_naive_recount(shakespeare):
    text = shakespeare[:20_000]
    fast = BPETokenizer.train(text, 256 + 150, pattern="gpt2", progress=False)
    assert fast.merges == naive_merges(text, 150, fast.pattern)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab \nc", max_size=60), st.integers(1, 30), st.integers(1, 3))
def test_incremental_equals_naive_on_tie_heavy_texts(text, num_merges, min_frequency):
    fast = BPETokenizer.train(
        text, 256 + num_merges, pattern="gpt4", min_frequency=min_frequency, progress=False
    )
    assert fast.merges == naive_merges(text, num_merges, fast.pattern, min_frequency)


def test_training_is_deterministic_and_stops_at_min_frequency(shakespeare):
    text = shakespeare[:30_000]
    a = BPETokenizer.train(text, 600, progress=False)
    b = BPETokenizer.train(iter([text]), 600, progress=False)
    assert a.merges == b.merges and a.fingerprint() == b.fingerprint()
    small = BPETokenizer.train("abab cdcd", 300, progress=False, min_frequency=2)
    assert small.vocab_size < 300 and small.merges  # ran out of pairs seen twice
    assert BPETokenizer.train("abab", 300, min_frequency=10, progress=False).merges == []


def test_training_cuts_special_tokens_out(shakespeare):
    text = "<|endoftext|>".join([shakespeare[:2000]] * 5)
    tok = BPETokenizer.train(text, 400, special_tokens=["<|endoftext|>"], progress=False)
    assert all(b"<|" not in tok.vocab[i] for i in range(256, len(tok.vocab)))
    assert tok.special.ids == {"<|endoftext|>": 399}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"vocab_size": 100}, "at least 256"),
        ({"vocab_size": 257, "special_tokens": ["<a>", "<b>"]}, "at least 256"),
        ({"vocab_size": 300, "min_frequency": 0}, "min_frequency"),
        ({"vocab_size": 300, "pattern": "(unclosed"}, "not a valid regex"),
        ({"vocab_size": 300, "special_tokens": "<a>"}, "not one string"),
        ({"vocab_size": 300, "special_tokens": ["<a>", "<a>"]}, "twice"),
    ],
)
def test_bad_training_arguments(kwargs, match):
    with pytest.raises(TokenizerError, match=match):
        BPETokenizer.train("some text", progress=False, **kwargs)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_roundtrip_any_text(tok, text):
    ids = tok.encode_ordinary(text)
    assert tok.decode(ids) == text
    assert all(0 <= i < 1022 for i in ids)


def test_lone_surrogate_becomes_replacement_character(tok):
    """Python strings may hold lone surrogates, which UTF-8 cannot: they encode as U+FFFD
    (tiktoken's rule), so decode gives U+FFFD back; a valid pair joins into its character."""
    assert tok.decode(tok.encode("a\ud800b")) == "a\ufffdb"
    assert tok.encode("\udfff") == tok.encode("\ufffd")
    assert tok.decode(tok.encode("\ud83d\ude00")) == "\U0001f600"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab etha\n", max_size=300) | st.sampled_from(["a" * 500, " " * 333]))
def test_heap_merge_equals_scan_merge(tok, text):
    """merge_long (heap, long chunks) and merge_short (scan) pick the same merges."""
    ids = list(text.encode())
    assert merge_long(ids, tok._pair_table) == merge_short(list(ids), tok._pair_table)


def test_a_million_letter_chunk_encodes_and_decodes(tok):
    """A single million-letter chunk goes through the heap merge (O(n log n); its time
    against 100,000 letters is measured by benchmarks/tokenizer.py, not asserted here)."""
    for n in (100_000, 1_000_000):
        ids = tok.encode("a" * n)
        assert tok.decode(ids) == "a" * n and len(ids) < n / 4
        assert ids == merge_long(list(b"a" * n), tok._pair_table)
    assert tok.decode(tok.encode(" " * 200_000)) == " " * 200_000


def test_decode_errors_and_partial_characters(tok):
    with pytest.raises(TokenizerError, match="id 5000 at position 1"):
        tok.decode([65, 5000])
    with pytest.raises(TokenizerError, match="id -1 at position 0"):
        tok.decode([-1])
    euro = tok.encode_ordinary("€")
    first_byte = tok.id_to_bytes(euro[0])[:1]
    cut = [tok.rank[first_byte]]
    assert tok.decode(cut) == "\ufffd"
    assert tok.decode_bytes(cut) == first_byte
    with pytest.raises(UnicodeDecodeError):
        tok.decode(cut, errors="strict")
    assert tok.id_to_bytes(tok.special.ids["<|pad|>"]) == b"<|pad|>"


def test_special_tokens(tok):
    eot, pad = tok.special.ids["<|endoftext|>"], tok.special.ids["<|pad|>"]
    text = "Hello<|endoftext|>world<|pad|>"
    with pytest.raises(TokenizerError, match=r"'<\|endoftext\|>' at position 5"):
        tok.encode(text)
    ids = tok.encode(text, allowed_special="all")
    assert ids.count(eot) == 1 and ids.count(pad) == 1 and tok.decode(ids) == text
    with pytest.raises(TokenizerError, match="pad"):
        tok.encode(text, allowed_special={"<|endoftext|>"})
    only_eot = tok.encode("a<|endoftext|>b", allowed_special={"<|endoftext|>"})
    assert eot in only_eot
    plain = tok.encode(text, allowed_special="none")
    assert plain == tok.encode_ordinary(text) and eot not in plain and tok.decode(plain) == text
    with pytest.raises(TokenizerError, match="allowed_special"):
        tok.encode(text, allowed_special="some")


def test_custom_pattern_that_skips_text_is_an_error():
    with pytest.raises(TokenizerError, match="skips some characters"):
        BPETokenizer.train("abc abc", 260, pattern=r"\w+", progress=False)
    tok = BPETokenizer.train("abcabc", 260, pattern=r"\w+", progress=False)
    with pytest.raises(TokenizerError, match="skips some characters"):
        tok.encode("abc abc")
    covering = BPETokenizer.train("abc abc", 260, pattern=r"\w+|[\s\S]", progress=False)
    assert covering.decode(covering.encode("abc, abc")) == "abc, abc"


def test_save_load_is_readable_and_exact(tok, tmp_path):
    path = tmp_path / "bpe.json"
    tok.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["type"] == "bpe" and data["version"] == 1 and data["pattern"] == tok.pattern
    assert data["special_tokens"] == {"<|endoftext|>": 1022, "<|pad|>": 1023}
    first = data["merges"][0]
    assert tok.vocab[first[0]] + tok.vocab[first[1]] == first[2].encode()
    assert sum(1 for line in path.read_text().splitlines() if line.startswith("  [")) == 766
    for loaded in (BPETokenizer.load(path), load_tokenizer(path)):
        assert loaded == tok and loaded.fingerprint() == tok.fingerprint()
        assert loaded.encode("To be, or not") == tok.encode("To be, or not")


def test_corrupt_files_are_clear_errors(tok, tmp_path):
    path = tmp_path / "bpe.json"
    tok.save(path)
    data = json.loads(path.read_text())
    data["merges"][5] = [5000, 1]
    path.write_text(json.dumps(data))
    with pytest.raises(TokenizerError, match="merge 5"):
        load_tokenizer(path)
    del data["merges"]
    path.write_text(json.dumps(data))
    with pytest.raises(TokenizerError, match="corrupt"):
        load_tokenizer(path)


def test_encode_batch_equals_encode(tok, shakespeare):
    texts = [shakespeare[i : i + 40_000] for i in range(0, 400_000, 40_000)] + ["", "x"]
    assert tok.encode_batch(texts, num_workers=2) == [tok.encode(t) for t in texts]
    assert tok.encode_batch(["a<|pad|>"], allowed_special="all") == [
        tok.encode("a<|pad|>", allowed_special="all")
    ]


def test_encode_each_equals_encode_one_by_one(tok, shakespeare, monkeypatch):
    """encode_each checks the joined texts once; each text still gets what encode gives,
    special tokens and lone surrogates included, and the cache still starts afresh."""
    import chalklm.tokenizers.bpe as bpe

    lines = shakespeare[:30_000].splitlines() + ["", " ", "über\r\n", "a\ud800b"]
    assert tok.encode_each(lines) == [tok.encode(t) for t in lines]
    with_special = ["plain", "a<|pad|>b", "<|endoftext|>"]
    assert tok.encode_each(with_special, "all") == [tok.encode(t, "all") for t in with_special]
    assert tok.encode_each(with_special, "none") == [tok.encode(t, "none") for t in with_special]
    with pytest.raises(TokenizerError, match=re.escape("special token '<|pad|>'")):
        tok.encode_each(with_special)
    monkeypatch.setattr(bpe, "_CACHE_LIMIT", 10)
    monkeypatch.setattr(bpe, "_CACHE_CHECK_EVERY", 50)
    assert tok.encode_each(lines) == [tok.encode(t) for t in lines]
    assert len(tok._cache) < 1000


def test_encode_batch_keeps_small_inputs_in_this_process(tok, monkeypatch):
    import chalklm.tokenizers.batch as batch

    monkeypatch.setattr(batch.multiprocessing, "get_context", lambda *a: pytest.fail("forked"))
    texts = ["To be, or not to be", "", "that is the question"] * 100
    assert tok.encode_batch(texts, num_workers=8) == [tok.encode(t) for t in texts]


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_long_texts_are_counted_in_blocks_exactly(shakespeare, monkeypatch, pattern):
    """count_chunks cuts long texts at a newline before a non-space: no chunk changes."""
    import chalklm.tokenizers.bpe_train as bpe_train

    monkeypatch.setattr(bpe_train, "_BLOCK_CHARS", 5_000)
    text = shakespeare[:200_000] + "\n \n\r\nx\n\n" + "  end\n" * 3
    regex = compile_pattern(PATTERNS[pattern])
    blocks = list(bpe_train._blocks(text, PATTERNS[pattern]))
    assert len(blocks) > 30 and "".join(blocks) == text
    counted = bpe_train.count_chunks(text, PATTERNS[pattern], progress=False)
    assert counted == Counter(regex.findall(text))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="aZ1!'s \n\r\t\u00a0", max_size=120), st.sampled_from(["gpt2", "gpt4"]))
def test_block_cuts_never_change_chunks(text, pattern):
    import chalklm.tokenizers.bpe_train as bpe_train

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bpe_train, "_BLOCK_CHARS", 2)
        counted = bpe_train.count_chunks(text, PATTERNS[pattern], progress=False)
    assert counted == Counter(compile_pattern(PATTERNS[pattern]).findall(text))


@settings(max_examples=100, deadline=None)
@given(st.text(st.characters(exclude_categories=()) | st.sampled_from("\ud800\udc00\ud83d")))
def test_roundtrip_with_surrogates_is_the_utf16_repair(tok, text):
    """Any str, lone surrogates included: decode(encode(s)) is s with surrogate pairs joined
    and lone surrogates replaced by U+FFFD, and s itself when it has no surrogates."""
    repaired = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    assert tok.decode(tok.encode_ordinary(text)) == repaired
