"""The token cache: in the user cache, never beside the data; keyed by the text's content
and the tokenizer, so an edited file is tokenized again."""

import os

import numpy as np
import pytest

from chalklm.data.batches import load_tokens, token_file_path
from chalklm.tokenizers.char import CharTokenizer

VOCAB = CharTokenizer("abcdefghijklmnopqrstuvwxyz ,.\n")


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A user cache of this test's own (conftest's is shared by the whole session)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "chalklm"


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "data" / "input.txt"
    path.parent.mkdir()
    path.write_text("hello world, hello chalk\n")
    return path


def test_the_cache_is_written_to_the_user_cache_not_beside_the_data(text_file, own_cache):
    ids = load_tokens(str(text_file), VOCAB)
    assert VOCAB.decode(ids) == text_file.read_text()
    assert os.listdir(text_file.parent) == ["input.txt"]
    cached = list((own_cache / "tokens").glob("input.txt.*.tokens"))
    assert cached == [token_file_path(str(text_file), VOCAB.fingerprint())]


def test_an_edited_file_is_tokenized_again_and_the_old_ids_removed(text_file, own_cache):
    first = token_file_path(str(text_file), VOCAB.fingerprint())
    assert VOCAB.decode(load_tokens(str(text_file), VOCAB)) == "hello world, hello chalk\n"
    stat = text_file.stat()
    text_file.write_text("jello world, hello chalk\n")  # same size; mtime kept as it was
    os.utime(text_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert VOCAB.decode(load_tokens(str(text_file), VOCAB)) == "jello world, hello chalk\n"
    assert not first.exists()
    assert len(list((own_cache / "tokens").glob("input.txt.*.tokens"))) == 1


def test_the_same_text_is_read_from_the_cache(text_file, monkeypatch):
    ids = np.array(load_tokens(str(text_file), VOCAB))
    monkeypatch.setattr(CharTokenizer, "encode", lambda *a: pytest.fail("encoded twice"))
    assert np.array_equal(load_tokens(str(text_file), VOCAB), ids)


def test_another_tokenizer_gets_its_own_cache(text_file):
    other = CharTokenizer("abcdefghijklmnopqrstuvwxyz ,.\n!")
    assert token_file_path(str(text_file), VOCAB.fingerprint()) != \
        token_file_path(str(text_file), other.fingerprint())
    assert other.decode(load_tokens(str(text_file), other)) == text_file.read_text()
    assert VOCAB.decode(load_tokens(str(text_file), VOCAB)) == text_file.read_text()


def test_chalklm_cache_dir_moves_the_cache(text_file, tmp_path, monkeypatch):
    monkeypatch.setenv("CHALKLM_CACHE_DIR", str(tmp_path / "elsewhere"))
    load_tokens(str(text_file), VOCAB)
    assert len(list((tmp_path / "elsewhere" / "tokens").glob("input.txt.*.tokens"))) == 1


def test_python_docs_has_a_cache_too(own_cache):
    tokenizer = CharTokenizer("abc")
    path = token_file_path("python-docs", tokenizer.fingerprint())
    assert path.parent == own_cache / "tokens" and path.name.startswith("python-docs.")
