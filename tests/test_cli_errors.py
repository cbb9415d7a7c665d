"""Bad input on the command line: one line on stderr, exit 2, and nothing the user had on
disk lost. Each case is one a new user met (tiny models, a few steps each)."""

import io
import json
import shutil
import sys

import pytest

from chalklm.checkpoint import load_checkpoint
from chalklm.cli import main
from chalklm.tokenizers import BPETokenizer

TINY_TOML = """
[model]
n_layer = 1
n_head = 2
n_embd = 16
block_size = 16
[train]
batch_size = 4
max_steps = 2
log_interval = 1
eval_interval = 100
eval_batch_size = 16
dtype = "fp32"
device = "cpu"
sample_tokens = 0
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A config, a text, and a trained run to copy (`run`)."""
    from chalklm.data.registry import load_text

    folder = tmp_path_factory.mktemp("census")
    (folder / "tiny.toml").write_text(TINY_TOML)
    (folder / "text.txt").write_text(load_text("shakespeare")[:5000])
    argv = ["train", "--config", str(folder / "tiny.toml"), "--data", str(folder / "text.txt"),
            "--no-progress", "--out", str(folder / "run")]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    return folder


def train_args(files, out, *extra):
    return ["train", "--config", str(files / "tiny.toml"), "--data", str(files / "text.txt"),
            "--no-progress", "--out", str(out), *extra]


def a_run(files, tmp_path, name="run"):
    """A copy of the trained run, to damage."""
    return shutil.copytree(files / "run", tmp_path / name)


def run_cli(argv) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    return exit_.value.code


def refused(argv, capsys, *fragments) -> str:
    """Run `argv`; it must exit 2 with one line on stderr holding every fragment."""
    capsys.readouterr()
    code = run_cli(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("chalklm") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_bare_chalklm_is_a_usage_error_on_stderr(capsys):
    err = refused([], capsys, "name a command", "train")
    assert capsys.readouterr().out == ""
    assert err


@pytest.mark.parametrize("argv, suggestion", [
    (["train", "--n_layer=4"], "--set n_layer=4"),  # nanoGPT's way of setting a key
    (["train", "--learning-rate", "3e-4"], "--set learning_rate=3e-4"),
    (["train", "--dropout"], "--set dropout=VALUE"),
])
def test_a_config_key_typed_as_an_option_suggests_set(capsys, argv, suggestion):
    refused(argv, capsys, "unrecognized arguments", suggestion)


def test_a_config_that_is_not_utf8(files, tmp_path, capsys):
    (tmp_path / "bad.toml").write_bytes(b"[model]\nn_layer = 1 # \xff\n")
    refused(["train", "--config", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "r")],
            capsys, "not valid UTF-8 at byte 22")


@pytest.mark.parametrize("argv, fragment", [
    (["--seed", "-1"], "argument --seed"),
    (["--set", f"seed={2**70}"], "seed must be a whole number from 0"),
    (["--set", "seed=-5"], "seed must be a whole number from 0"),
])
def test_seeds_out_of_range(files, tmp_path, capsys, argv, fragment):
    refused(train_args(files, tmp_path / "r", *argv), capsys, fragment)
    assert not (tmp_path / "r").exists()


def test_sample_seed_below_zero(files, capsys):
    refused(["sample", "--checkpoint", str(files / "run"), "--seed", "-1"], capsys,
            "argument --seed")


def test_translation_training_seed_below_zero(capsys):
    refused(["train", "--config", "multi30k_de_en", "--seed", "-1"], capsys, "argument --seed")


def test_out_that_is_empty_a_file_or_under_a_file(files, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused(train_args(files, ""), capsys, "--out is empty")
    assert list(tmp_path.iterdir()) == []  # nothing trained into the current folder
    (tmp_path / "afile").write_text("mine")
    refused(train_args(files, tmp_path / "afile"), capsys, "is a file, not a folder")
    # a folder the system refuses (even root cannot make a folder under a file): said
    # before the text is read or tokenized
    import chalklm.training.trainer as trainer

    monkeypatch.setattr(trainer, "load_tokens", lambda *a: pytest.fail("tokenized first"))
    refused(train_args(files, tmp_path / "afile" / "run"), capsys, "could not write",
            "afile is a file, not a folder")
    assert (tmp_path / "afile").read_text() == "mine"


@pytest.mark.parametrize("name", ["sample.txt", "loss.png", "metrics.jsonl"])
def test_a_folder_of_the_users_files_is_refused_unless_forced(files, tmp_path, capsys, name):
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_text("the user's own\n")
    refused(train_args(files, out), capsys, "not empty", name, "--force")
    assert [p.name for p in out.iterdir()] == [name]
    assert (out / name).read_text() == "the user's own\n"
    assert run_cli(train_args(files, out, "--force")) == 0  # asked: the run replaces it
    assert load_checkpoint(out / "last").config.n_layer == 1


def test_a_run_that_never_saved_starts_over_with_its_own_metrics(files, tmp_path):
    out = a_run(files, tmp_path)
    shutil.rmtree(out / "best")
    shutil.rmtree(out / "last")  # as after a kill -9 before the first save
    (out / "metrics.jsonl").write_text('{"step": 1, "train_loss": 99.0}\n{"step": 2, "tr')
    assert run_cli(train_args(files, out)) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 2] and records[0]["train_loss"] < 99


def test_a_forced_new_run_first_clears_the_old_runs_files(files, tmp_path):
    out = a_run(files, tmp_path)
    (out / "snapshots" / "step-00009999").mkdir(parents=True)  # a translation run's
    (out / "sample.txt").write_text("old")
    assert run_cli(train_args(files, out, "--force", "--max-steps", "1")) == 0
    assert not (out / "snapshots").exists() and not (out / "sample.txt").exists()
    assert json.loads((out / "last" / "trainer_state.json").read_text())["step"] == 1
    assert [json.loads(line)["step"] for line in
            (out / "metrics.jsonl").read_text().splitlines()] == [1, 1]


def test_a_run_killed_between_its_first_two_saves_says_how_to_go_on(files, tmp_path,
                                                                    capsys):
    out = a_run(files, tmp_path)
    shutil.rmtree(out / "last")  # best/ was saved, last/ not yet
    refused(train_args(files, out), capsys, "no last/ to resume from", "--force")
    refused(train_args(files, out, "--resume"), capsys, "no resumable checkpoint")
    assert run_cli(train_args(files, out, "--force")) == 0


def test_a_folder_holding_only_a_cut_off_write_of_chalklms_is_no_users_folder(files,
                                                                             tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "..chalklm-run.x1y2z3w4.partial").write_text("a")  # killed writing the marker
    assert run_cli(train_args(files, out)) == 0
    assert sorted(p.name for p in out.glob(".*")) == [".chalklm-run"]


def test_resume_with_a_tokenizer_of_another_model(files, tmp_path, capsys):
    out = a_run(files, tmp_path)
    BPETokenizer.train((files / "text.txt").read_text(), 300).save(
        out / "last" / "tokenizer.json")
    vocab = load_checkpoint(out / "best").config.vocab_size
    refused(train_args(files, out, "--resume", "--max-steps", "4"), capsys,
            f"the tokenizer has 300 ids, the model {vocab}")
    refused(train_args(files, out, "--resume", "--tokenizer", "char"), capsys,
            "leave out --tokenizer")


def test_sample_with_a_smaller_tokenizer_names_both_sizes(files, tmp_path, capsys):
    from chalklm.tokenizers import CharTokenizer

    out = a_run(files, tmp_path)
    vocab = load_checkpoint(out / "best").config.vocab_size
    CharTokenizer("abcdefgh\n").save(out / "best" / "tokenizer.json")
    refused(["sample", "--checkpoint", str(out), "--prompt", "a", "--max-new-tokens", "50",
             "--seed", "0", "--temperature", "2"], capsys,
            f"the tokenizer has 9 ids, the model {vocab}")


def test_resume_with_the_config_of_another_kind_of_model(files, tmp_path, capsys):
    import numpy as np

    from chalklm.checkpoint import save_checkpoint
    from chalklm.config import TransformerConfig
    from chalklm.tokenizers import CharTokenizer

    translation = tmp_path / "translation"
    save_checkpoint(translation / "last", {"x": np.zeros(1, np.float32)},
                    TransformerConfig(src_vocab_size=9, tgt_vocab_size=9),
                    CharTokenizer("abcdefgh\n"), {}, {"step": 1})
    refused(train_args(files, translation, "--resume"), capsys,
            "holds a 'transformer' run, not a 'gpt' one")
    refused(["train", "--config", "multi30k_de_en", "--out", str(a_run(files, tmp_path)),
             "--resume"], capsys, "holds a 'gpt' run, not a 'transformer' one")


def test_resume_from_a_damaged_trainer_state(files, tmp_path, capsys):
    out = a_run(files, tmp_path)
    state = json.loads((out / "last" / "trainer_state.json").read_text())
    del state["rng"]
    (out / "last" / "trainer_state.json").write_text(json.dumps(state))
    refused(train_args(files, out, "--resume", "--max-steps", "4"), capsys,
            "trainer_state.json", "damaged", "KeyError")


def test_resume_drops_a_torn_last_metrics_line(files, tmp_path, capsys):
    out = a_run(files, tmp_path)
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "train_lo')  # a kill -9 in the middle of a line
    assert run_cli(train_args(files, out, "--resume", "--max-steps", "4")) == 0
    steps = [json.loads(line)["step"] for line in
             (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 2, 3, 4, 4]
    (out / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 4}\n')
    refused(train_args(files, out, "--resume", "--max-steps", "6"), capsys,
            "metrics.jsonl: line 2 is not a JSON record")


def test_leftovers_of_cut_off_saves_are_cleared_and_a_moved_aside_last_restored(
        files, tmp_path):
    out = a_run(files, tmp_path)
    shutil.copytree(out / "last", out / ".best.partial-k2j4_x9a")  # a save cut off
    (out / ".metrics.jsonl.a1b2c3d4.partial").write_text("half")
    (out / ".notes").write_text("the user's")  # not chalklm's: kept
    (out / "last").rename(out / ".last.old-4242")  # cut off between a save's two renames
    assert run_cli(train_args(files, out, "--resume", "--max-steps", "4")) == 0
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [
        ".chalklm-run", ".notes"]
    assert json.loads((out / "last" / "trainer_state.json").read_text())["step"] == 4


def test_checkpoint_files_share_one_mode(files):
    last = files / "run" / "last"
    modes = {p.name: p.stat().st_mode & 0o777 for p in last.iterdir()}
    assert len(set(modes.values())) == 1, modes


def test_invalid_utf8_is_refused_alike_from_a_file_an_argument_or_stdin(
        files, tmp_path, capsys, monkeypatch):
    tokenizer = str(files / "run" / "last" / "tokenizer.json")
    bpe = tmp_path / "bpe.json"
    BPETokenizer.train("some text to learn from", 270).save(bpe)
    (tmp_path / "bad.txt").write_bytes(b"a\xffb")
    for tok in (tokenizer, str(bpe)):
        refused(["tokenizer", "encode", "--tokenizer", tok, "--file", str(tmp_path / "bad.txt")],
                capsys, "not valid UTF-8 at byte 1")
        # Python hands an argument's undecodable bytes over as lone surrogates
        refused(["tokenizer", "encode", "--tokenizer", tok, "a\udcffb"], capsys,
                "the text argument: not valid UTF-8 at byte 1")
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a\xffb")))
        refused(["tokenizer", "encode", "--tokenizer", tok], capsys,
                "standard input: not valid UTF-8 at byte 1")
    refused(["sample", "--checkpoint", str(files / "run"), "--prompt", "a\udcffb"], capsys,
            "--prompt: not valid UTF-8 at byte 1")


def test_a_character_the_vocabulary_lacks_is_said_in_the_commands_terms(files, capsys):
    err = refused(["tokenizer", "encode", "--tokenizer",
                   str(files / "run" / "last" / "tokenizer.json"), "naïve \u2603"], capsys,
                  "U+", "not in the vocabulary")
    assert "unknown=" not in err


def test_char_tokenizer_refuses_bpe_options(files, tmp_path, capsys):
    text = str(files / "text.txt")
    refused(["tokenizer", "train", "--type", "char", "--vocab-size", "5", "--data", text,
             "--out", str(tmp_path / "t.json")], capsys, "--vocab-size", "--type char")
    assert not (tmp_path / "t.json").exists()


def test_tokenizer_out_that_cannot_be_written_is_refused_before_training(files, tmp_path,
                                                                        capsys, monkeypatch):
    from chalklm.tokenizers import BPETokenizer

    monkeypatch.setattr(BPETokenizer, "train", lambda *a, **k: pytest.fail("trained first"))
    (tmp_path / "afile").write_text("mine")
    for out, why in ((tmp_path / "afile" / "t.json", "afile is a file, not a folder"),
                     (tmp_path, "it is a folder")):
        refused(["tokenizer", "train", "--data", str(files / "text.txt"), "--out", str(out)],
                capsys, "could not write", why)
    assert (tmp_path / "afile").read_text() == "mine"


def test_import_of_a_pickle_is_one_line_without_pytorchs_warning(tmp_path, capsys):
    import pickle

    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "gpt2", "n_layer": 1, "n_head": 1, "n_embd": 4, "n_positions": 8,
        "vocab_size": 10}))
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"a": [1, 2]}, protocol=4))
    refused(["import-hf", str(folder), str(tmp_path / "out")], capsys, "--allow-pickle")
    err = refused(["import-hf", str(folder), str(tmp_path / "out"), "--allow-pickle"], capsys,
                  "not a weights-only PyTorch file")
    assert "weights_only" not in err and "\x1b" not in err
