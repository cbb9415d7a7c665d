"""`chalklm tokenizer ...`: train, encode, decode, show, and one-line errors."""

import pytest

from chalklm.cli import main
from chalklm.tokenizers import BPETokenizer, load_tokenizer


def run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture
def trained(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. the dog sat on the log.\n" * 50 + "naïve café\n")
    out = tmp_path / "tok.json"
    code, stdout, _ = run(
        ["tokenizer", "train", "--data", str(corpus), "--vocab-size", "270", "--out", str(out),
         "--special", "<|endoftext|>", "--no-progress"],
        capsys,
    )
    assert code == 0 and "saved" in stdout
    return out


def test_train_writes_a_loadable_bpe(trained):
    tok = load_tokenizer(trained)
    assert isinstance(tok, BPETokenizer) and tok.vocab_size == 270
    assert tok.special.ids == {"<|endoftext|>": 269}


def test_encode_decode_roundtrip(trained, capsys):
    text = "the cat sat on the café mat"
    code, out, _ = run(["tokenizer", "encode", "--tokenizer", str(trained), text], capsys)
    ids = [int(x) for x in out.split()]
    assert code == 0 and ids == load_tokenizer(trained).encode(text)
    code, out, _ = run(["tokenizer", "decode", "--tokenizer", str(trained), *map(str, ids)], capsys)
    assert code == 0 and out == text + "\n"


def test_show_delimits_tokens_over_their_ids(trained, capsys):
    code, out, _ = run(["tokenizer", "show", "--tokenizer", str(trained), "the cat sat"], capsys)
    tok = load_tokenizer(trained)
    ids = tok.encode("the cat sat")
    token_row, id_row, summary = out.splitlines()
    assert code == 0 and len(ids) < len("the cat sat")  # merges made sub-word tokens
    assert [c.strip() for c in token_row.strip("|").split("|")] == [
        tok.id_to_bytes(i).decode().replace(" ", "·") for i in ids
    ]
    assert [int(c) for c in id_row.strip("|").split("|")] == ids
    assert len(token_row) == len(id_row) and "11 characters" in summary


def test_special_tokens_need_the_flag(trained, capsys):
    argv = ["tokenizer", "encode", "--tokenizer", str(trained), "a<|endoftext|>"]
    code, _, err = run(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "allowed_special" in err
    code, out, _ = run([*argv, "--allow-special"], capsys)
    assert code == 0 and out.split()[-1] == "269"


def test_char_tokenizer_and_shakespeare(tmp_path, capsys):
    out = tmp_path / "char.json"
    code, _, _ = run(["tokenizer", "train", "--type", "char", "--out", str(out)], capsys)
    assert code == 0 and load_tokenizer(out).vocab_size == 65
    code, _, err = run(["tokenizer", "train", "--type", "char", "--out", str(out)], capsys)
    assert code == 2 and "--force" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["tokenizer", "decode", "--tokenizer", "{tok}", "1", "99999"], "id 99999"),
        (["tokenizer", "decode", "--tokenizer", "{tok}", "x"], "whole numbers"),
        (["tokenizer", "encode", "--tokenizer", "{missing}", "hi"], "no such tokenizer file"),
        (["tokenizer", "train", "--data", "{missing}", "--out", "{new}"], "no such file"),
        (["tokenizer", "train", "--vocab-size", "10", "--out", "{new}"], "at least 256"),
    ],
)
def test_errors_are_one_line(trained, tmp_path, capsys, argv, message):
    paths = {"tok": trained, "missing": tmp_path / "missing", "new": tmp_path / "new.json"}
    code, _, err = run([a.format(**paths) for a in argv], capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_render_tokens_wraps_and_shows_partial_bytes():
    from chalklm.tokenizers import BPETokenizer, CharTokenizer
    from chalklm.tokenizers.show import render_tokens

    bpe = BPETokenizer.train("ab ab ab\n", 258, progress=False)
    ids = bpe.encode("ab ab\n€")
    rendered = render_tokens(bpe, ids, width=12).splitlines()
    assert len(rendered) % 2 == 0 and len(rendered) > 2  # wrapped into several pairs of rows
    assert all(len(line) <= 12 for line in rendered)
    cells = "".join(rendered[0::2])
    assert "·ab" in cells and "↵" in cells and "<e2>" in cells  # € is 3 raw bytes here
    char = CharTokenizer("hi ")
    assert render_tokens(char, char.encode("hi hi")).splitlines()[0] == "|h|i|·|h|i|"
