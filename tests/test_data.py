"""The dataset registry: lookup order, offline errors, and what counts as readable text."""

import hashlib

import pytest

from chalklm.data import dataset_file, load_default_text, load_text, read_text_file, registry
from chalklm.errors import DataError


def test_shakespeare_from_data_dir_matches_pinned_sha():
    path = dataset_file("shakespeare")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == (
        registry.DATASETS["shakespeare"].files["text"].sha256
    )
    text = load_text("shakespeare")
    assert len(text) == 1115394 and len(set(text)) == 65


def test_multi30k_files_are_found_and_aligned():
    de = dataset_file("multi30k", "val.de").read_text(encoding="utf-8").splitlines()
    en = dataset_file("multi30k", "val.en").read_text(encoding="utf-8").splitlines()
    assert len(de) == len(en) == 1014


def test_python_docs_is_always_there():
    text = load_text("python-docs")
    assert len(text) > 100_000 and "class" in text


def test_cache_is_second_in_line(tmp_path, monkeypatch):
    monkeypatch.setenv("CHALKLM_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "chalklm" / "tinyshakespeare" / "input.txt"
    cached.parent.mkdir(parents=True)
    cached.write_text("To be, or not to be\n", encoding="utf-8")
    assert load_text("shakespeare") == "To be, or not to be\n"


def test_offline_missing_dataset_is_one_line_with_three_fixes(tmp_path, monkeypatch):
    monkeypatch.setenv("CHALKLM_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataError) as info:
        load_text("shakespeare")
    message = str(info.value)
    assert "\n" not in message
    assert "CHALKLM_DATA_DIR" in message and "copy it to" in message and "internet" in message
    assert str(tmp_path / "empty") in message  # says what was tried


def test_default_falls_back_to_python_docs_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHALKLM_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    name, text = load_default_text()
    assert name == "python-docs" and len(text) > 100_000
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "python-docs" in err[0]


@pytest.mark.parametrize(
    "content, words",
    [(b"", "empty"), (b"  \n\t", "empty"), (b"ab\x00cd", "binary"), (b"caf\xe9", "UTF-8")],
)
def test_unreadable_files_are_clear_errors(tmp_path, content, words):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=words):
        read_text_file(path)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_text(str(tmp_path / "nope.txt"))
    with pytest.raises(DataError, match="directory"):
        load_text(str(tmp_path))


def test_parallel_corpus_is_not_one_text():
    with pytest.raises(DataError, match="parallel corpus"):
        load_text("multi30k")


def test_local_file_is_read(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_text("Grüße\n", encoding="utf-8")
    assert load_text(str(path)) == "Grüße\n"
