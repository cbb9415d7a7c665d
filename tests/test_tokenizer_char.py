"""CharTokenizer and load_tokenizer: the vocabulary, errors, the file, the fingerprint."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalklm.errors import ChalkError, TokenizerError
from chalklm.tokenizers import CharTokenizer, load_tokenizer


def test_vocabulary_is_sorted_characters():
    tok = CharTokenizer("hello world")
    assert tok.chars == sorted(set("hello world"))
    assert tok.vocab_size == 8
    assert tok.encode("low") == [tok.chars.index(c) for c in "low"]
    assert tok.decode(tok.encode("hello world")) == "hello world"


@settings(deadline=None)
@given(st.text(min_size=1))
def test_roundtrip_any_text(text):
    tok = CharTokenizer(text)
    assert tok.decode(tok.encode(text)) == text


def test_unknown_character_names_it_and_its_position():
    tok = CharTokenizer("abc")
    with pytest.raises(TokenizerError, match=r"'z'.*position 2"):
        tok.encode("abzc")
    assert issubclass(TokenizerError, ChalkError)


def test_unknown_replacement():
    tok = CharTokenizer("ab?")
    assert tok.decode(tok.encode("axb", unknown="?")) == "a?b"
    with pytest.raises(TokenizerError, match="not itself in the vocabulary"):
        tok.encode("axb", unknown="#")


def test_decode_rejects_out_of_range_ids():
    tok = CharTokenizer("ab")
    with pytest.raises(TokenizerError, match=r"id 5 at position 1"):
        tok.decode([0, 5])
    with pytest.raises(TokenizerError):
        tok.decode([-1])


def test_empty_text_is_an_error():
    with pytest.raises(TokenizerError):
        CharTokenizer("")


def test_save_load_and_dispatch(tmp_path):
    tok = CharTokenizer("To be, or not to be\n")
    path = tmp_path / "tok.json"
    tok.save(path)
    assert json.loads(path.read_text())["type"] == "char"
    for loaded in (CharTokenizer.load(path), load_tokenizer(path)):
        assert isinstance(loaded, CharTokenizer)
        assert loaded == tok
        assert loaded.fingerprint() == tok.fingerprint()


def test_a_saved_tokenizer_is_an_ordinary_file(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        CharTokenizer("abc").save(tmp_path / "tok.json")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "tok.json").stat().st_mode) == 0o644  # not mkstemp's 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]  # no temporary file left


def test_fingerprint_tells_vocabularies_apart():
    a, b = CharTokenizer("abc"), CharTokenizer("abd")
    assert a.fingerprint() == CharTokenizer("cba").fingerprint()
    assert a.fingerprint() != b.fingerprint()
    assert len(a.fingerprint()) == 64


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(TokenizerError, match="no such tokenizer file"):
        load_tokenizer(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TokenizerError, match="not a tokenizer JSON"):
        load_tokenizer(bad)
    bad.write_text('{"type": "wordpiece"}')
    with pytest.raises(TokenizerError, match="unknown tokenizer type"):
        load_tokenizer(bad)
    bad.write_text('{"type": "char", "version": 1}')
    with pytest.raises(TokenizerError, match="corrupt"):
        load_tokenizer(bad)
    bad.write_text('{"type": "char", "version": 1, "chars": ["b", "a"]}')
    with pytest.raises(TokenizerError, match="sorted"):
        load_tokenizer(bad)
