"""chalklm's BPE against tiktoken and Hugging Face tokenizers: the same ids, token for token.

GPT-2's and GPT-4's real vocabularies are downloads (tiktoken does not ship them), so the
vocabularies here are trained by chalklm, exported, and read back by the peers; the
`from_*` readers are checked on files written in the peers' own layouts.
"""

import base64
import json
import os
from pathlib import Path

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Regex, Tokenizer, pre_tokenizers

from chalklm.errors import TokenizerError
from chalklm.tokenizers import BPETokenizer
from chalklm.tokenizers.formats import bytes_to_unicode
from chalklm.tokenizers.patterns import EXPORT_PATTERNS, PATTERNS, compile_pattern

DATA = Path(os.environ["CHALKLM_DATA_DIR"])
SPECIALS = ["<|endoftext|>", "<|im_start|>"]

CASES = {
    "empty": "",
    "one character": "x",
    "emoji": "I 😀 you 👍🏽👩‍👩‍👧‍👦 🏳️‍🌈!!",
    "cjk": "你好，世界。日本語のテキスト",
    "hangul": "안녕하세요 세계 한국어",
    "arabic": "مرحبا بالعالم، كيف حالك؟",
    "unicode spaces": "a\u00a0b\u2003c\u3000d\u2009e\u202f f\u200bg",
    "crlf mixes": "line one\r\nline two\n\r\n\rthree\r\r\n  \r\n end\n",
    "whitespace runs": "a  b   c    d\t\t e \n\n\n   f     ",
    "trailing spaces": "ends with spaces   ",
    "contractions": "it's I'm we'll they've she'd you're IT'S DON'T ''s",
    "code": 'def f(x):\n    return {"a": x ** 2}  # comment\n\tif x != 0: pass;\n',
    "specials": "Hello<|endoftext|>world <|im_start|> again<|endoftext|>",
    **{f"{n} digits": "".join(str((i * 7 + 3) % 10) for i in range(n)) for n in range(1, 21)},
}
# Each regex engine classifies characters by its own Unicode tables: Python's `regex` knows
# letters that Hugging Face's onig (older tables) does not, e.g. U+1DF1F (Unicode 15).
# The random texts use characters assigned by Unicode 14 (Python 3.11's unicodedata),
# where all three engines agree; newer characters may be cut differently by the peers.
ASSIGNED_TEXT = st.text(st.characters(exclude_categories=("Cs", "Cn")))
MULTILINGUAL = "".join(v for k, v in CASES.items() if k != "specials") * 30


@pytest.fixture(scope="module", params=["gpt2", "gpt4"])
def trio(request, tmp_path_factory):
    """(chalklm tokenizer, its tiktoken.Encoding, its HF Tokenizer) for one pattern."""
    text = (DATA / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:150_000]
    tok = BPETokenizer.train(
        text + MULTILINGUAL, 1200, pattern=request.param, special_tokens=SPECIALS, progress=False
    )
    path = tmp_path_factory.mktemp("hf") / "tokenizer.json"
    tok.save_hf(path)
    return tok, tok.to_tiktoken(), Tokenizer.from_file(str(path))


def assert_same_ids(trio, text):
    tok, tt, hf = trio
    ours = tok.encode(text, allowed_special="all")
    assert ours == tt.encode(text, allowed_special="all")
    assert ours == hf.encode(text, add_special_tokens=False).ids
    assert tok.decode(ours) == text == tt.decode(ours)


@pytest.mark.parametrize("name", CASES)
def test_same_ids_on_string_classes(trio, name):
    assert_same_ids(trio, CASES[name])


@settings(max_examples=150, deadline=None)
@given(ASSIGNED_TEXT)
def test_same_ids_on_any_text(trio, text):
    for special in SPECIALS:  # a special token's text would be an id in all three
        text = text.replace(special, "")
    assert_same_ids(trio, text)


@pytest.mark.parametrize("role", ["shakespeare", "val.de", "val.en"])
def test_same_ids_on_a_whole_corpus_file(trio, role):
    path = DATA / ("tinyshakespeare/input.txt" if role == "shakespeare" else f"multi30k/{role}")
    assert_same_ids(trio, path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", PATTERNS)
@settings(max_examples=100, deadline=None)
@given(text=ASSIGNED_TEXT | st.sampled_from(list(CASES.values())))
def test_exporter_patterns_cut_alike(name, text):
    """Python's regex and Hugging Face's onig read each exporter's copy the same way."""
    ours = compile_pattern(PATTERNS[name]).findall(text)
    split = pre_tokenizers.Split(Regex(EXPORT_PATTERNS["hf"][name]), behavior="isolated")
    assert [piece for piece, _ in split.pre_tokenize_str(text)] == ours
    assert compile_pattern(EXPORT_PATTERNS["tiktoken"][name]).findall(text) == ours


def test_transformers_fast_tokenizer_reads_the_export(trio, tmp_path):
    from transformers import PreTrainedTokenizerFast

    tok = trio[0]
    tok.save_hf(tmp_path / "tokenizer.json")
    fast = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    text = CASES["code"] + CASES["emoji"] + CASES["specials"]
    ids = tok.encode(text, allowed_special="all")
    assert fast.encode(text, add_special_tokens=False) == ids
    assert fast.decode(ids) == text


def test_readers_give_back_the_same_tokenizer(trio, tmp_path):
    tok = trio[0]
    tok.save_tiktoken(tmp_path / "t.tiktoken")
    tok.save_hf(tmp_path / "tokenizer.json")
    assert (
        BPETokenizer.from_tiktoken_file(tmp_path / "t.tiktoken", tok.pattern, tok.special.ids)
        == tok
    )
    assert BPETokenizer.from_hf(tmp_path / "tokenizer.json") == tok
    assert BPETokenizer.from_hf(tmp_path) == tok  # a folder holding tokenizer.json


def gpt2_layout(tok):
    """tok's vocabulary with GPT-2's byte order (printable bytes first), as ranks."""
    order = sorted(range(256), key=lambda b: ord(bytes_to_unicode()[b]))
    ranks = {bytes([b]): i for i, b in enumerate(order)}
    ranks.update({tok.vocab[i]: i for i in range(256, len(tok.vocab))})
    return ranks


def write_gpt2_style_hf(tok, ranks, path):
    """A tokenizer.json laid out like GPT-2's: ByteLevel(use_regex) and only the true merges."""
    to_text = bytes_to_unicode()

    def text(token):
        return "".join(to_text[b] for b in token)

    merges = [f"{text(tok.vocab[a])} {text(tok.vocab[b])}" for a, b in tok.merges]
    special = {
        "id": len(ranks),
        "content": "<|endoftext|>",
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": True,
    }
    byte_level = {
        "type": "ByteLevel",
        "add_prefix_space": False,
        "trim_offsets": True,
        "use_regex": True,
    }
    data = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [special],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": None,
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": {**{text(t): i for t, i in ranks.items()}, "<|endoftext|>": len(ranks)},
            "merges": merges,
        },
    }
    path.write_text(json.dumps(data), encoding="utf-8")


def test_gpt2_style_files_read_like_tiktoken_and_hf(tmp_path):
    """A user with GPT-2's files (permuted byte ids, ByteLevel regex) gets tiktoken's ids."""
    shakespeare = (DATA / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    tok = BPETokenizer.train(shakespeare[:100_000] + MULTILINGUAL, 1000, "gpt2", progress=False)
    ranks = gpt2_layout(tok)
    specials = {"<|endoftext|>": len(ranks)}
    lines = [f"{base64.b64encode(t).decode()} {i}" for t, i in ranks.items()]
    (tmp_path / "gpt2.tiktoken").write_text("\n".join(lines) + "\n")
    write_gpt2_style_hf(tok, ranks, tmp_path / "tokenizer.json")
    reference = tiktoken.Encoding(
        "gpt2ish", pat_str=PATTERNS["gpt2"], mergeable_ranks=ranks, special_tokens=specials
    )
    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    from_tt = BPETokenizer.from_tiktoken_file(tmp_path / "gpt2.tiktoken", "gpt2", specials)
    from_hf = BPETokenizer.from_hf(tmp_path / "tokenizer.json")
    assert from_tt == from_hf and from_tt.byte_order[0] == ord("!")
    for text in [*CASES.values(), shakespeare[-50_000:]]:
        text = text.replace("<|im_start|>", "")
        expected = reference.encode(text, allowed_special="all")
        assert from_tt.encode(text, allowed_special="all") == expected
        assert hf.encode(text, add_special_tokens=False).ids == expected
        assert from_hf.decode(expected) == text


def test_gpt2_real_vocabulary_is_not_available_offline(tmp_path, monkeypatch):
    """tiktoken ships no vocabulary files: get_encoding downloads them, so offline it fails,
    which is why the tests above train their own vocabularies."""
    import requests
    import tiktoken.registry

    def no_network(*args, **kwargs):
        raise requests.ConnectionError("offline")

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(requests, "get", no_network)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    package = Path(tiktoken.__file__).parent
    assert not list(package.rglob("*.tiktoken")) and not list(package.rglob("*vocab*.bpe"))
    with pytest.raises(requests.ConnectionError):
        tiktoken.get_encoding("gpt2")


def test_reader_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("not-base64!! zero\n")
    with pytest.raises(TokenizerError, match="bad.tiktoken:1"):
        BPETokenizer.from_tiktoken_file(bad, "gpt2")
    gappy = tmp_path / "gappy.tiktoken"
    gappy.write_text("YQ== 0\nYg== 5\n")
    with pytest.raises(TokenizerError, match="gaps"):
        BPETokenizer.from_tiktoken_file(gappy, "gpt2")
    wordpiece = tmp_path / "tokenizer.json"
    wordpiece.write_text(json.dumps({"model": {"type": "WordPiece", "vocab": {}}}))
    with pytest.raises(TokenizerError, match="not byte-level BPE"):
        BPETokenizer.from_hf(wordpiece)
    with pytest.raises(TokenizerError, match="no such"):
        BPETokenizer.from_hf(tmp_path / "missing.json")


def test_to_tiktoken_without_tiktoken_is_a_clear_error(trio, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tiktoken", None)
    with pytest.raises(TokenizerError, match="pip install tiktoken"):
        trio[0].to_tiktoken()


@settings(max_examples=100, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cn",)) | st.sampled_from("\ud800\udfff")))
def test_lone_surrogates_encode_as_tiktoken_does(trio, text):
    tok, tt, _ = trio  # Hugging Face's Rust strings cannot hold surrogates at all
    assert tok.encode_ordinary(text) == tt.encode_ordinary(text)


def test_hf_trained_files_with_special_tokens_first(tmp_path):
    """tokenizers' ByteLevelBPETokenizer numbers its special tokens first (ids 0, 1) and the
    bytes after them: read with id_offset 2, it gives Hugging Face's ids, and writes back
    files that tiktoken and Hugging Face read the same way."""
    from tokenizers import ByteLevelBPETokenizer

    text = (DATA / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:200_000]
    trained = ByteLevelBPETokenizer()
    trained.train_from_iterator([text + MULTILINGUAL], vocab_size=900, show_progress=False,
                                special_tokens=["<s>", "</s>"])
    trained.save(str(tmp_path / "tokenizer.json"))
    tok = BPETokenizer.from_hf(tmp_path / "tokenizer.json")
    assert tok.id_offset == 2 and tok.special.ids == {"<s>": 0, "</s>": 1}
    tok.save(tmp_path / "ours.json")
    assert BPETokenizer.load(tmp_path / "ours.json") == tok
    tok.save_hf(tmp_path / "back" / "tokenizer.json")
    back = Tokenizer.from_file(str(tmp_path / "back" / "tokenizer.json"))
    tt = tok.to_tiktoken()
    for sample in [*CASES.values(), text[-20_000:], "<s>x</s>"]:
        sample = sample.replace("<|endoftext|>", "").replace("<|im_start|>", "")
        ids = tok.encode(sample, allowed_special="all")
        assert ids == trained.encode(sample).ids == back.encode(sample).ids
        assert ids == tt.encode(sample, allowed_special="all")
        assert min(ids, default=2) >= 0 and tok.decode(ids) == sample
    assert tok.id_to_bytes(2) == bytes([tok.byte_order[0]])
    with pytest.raises(TokenizerError, match="outside the ordinary"):
        BPETokenizer(tok.merges, special_tokens={"<s>": 5}, byte_order=tok.byte_order,
                     id_offset=2)
