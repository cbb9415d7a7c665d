"""`chalklm train --init-from DIR`: fine-tune a trained or imported checkpoint on new text,
in a new run folder, with the same trainer, metrics and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hf_llama import SMOLLM2_TEMPLATE, TINY, llama_folder, save_tokenizer, train_tokenizer

from chalklm.checkpoint import load_checkpoint, load_config, load_weights
from chalklm.cli import main
from chalklm.data.registry import load_text
from chalklm.interop import import_hf

TINY_TOML = """
[model]
n_layer = 2
n_head = 2
n_embd = 16
block_size = 16
[train]
batch_size = 4
max_steps = 6
learning_rate = 3e-3
warmup_steps = 2
log_interval = 1
eval_interval = 3
eval_batch_size = 16
dtype = "fp32"
device = "cpu"
sample_tokens = 10
compile = false
"""


@pytest.fixture
def train(tmp_path, data_dir):
    """`train(out, *extra)`: chalklm train with a tiny config on a small text; the exit code."""
    text = load_text("shakespeare")
    (tmp_path / "old.txt").write_text(text[:12_000])
    # new text in the same characters (a character tokenizer has no id for others)
    (tmp_path / "new.txt").write_text("\n".join(reversed(text[:12_000].splitlines())))
    (tmp_path / "tiny.toml").write_text(TINY_TOML)

    def run(*args):
        with pytest.raises(SystemExit) as info:
            main(["train", "--config", str(tmp_path / "tiny.toml"), "--no-progress", *args])
        return info.value.code

    return run


def steps(folder) -> list[int]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if "train_loss" in r]


def test_fine_tuning_starts_from_the_checkpoint(train, tmp_path):
    assert train("--data", str(tmp_path / "old.txt"), "--out", str(tmp_path / "base")) == 0
    base = load_checkpoint(tmp_path / "base" / "last")
    # a learning rate of 1e-9: the fine-tuned weights are the starting ones, all but
    # (a fresh model's would differ by about 0.02)
    assert train("--init-from", str(tmp_path / "base"), "--data", str(tmp_path / "new.txt"),
                 "--out", str(tmp_path / "still"), "--set", "learning_rate=1e-9",
                 "--set", "min_lr=1e-10", "--max-steps", "2") == 0
    still = load_checkpoint(tmp_path / "still" / "last")
    for name, array in base.weights.items():
        np.testing.assert_allclose(still.weights[name], array, atol=1e-7, err_msg=name)
    assert still.tokenizer == base.tokenizer and still.config == base.config
    assert steps(tmp_path / "still") == [1, 2]  # a new run: its own steps from the start
    # a real fine-tune moves the weights, and the base run stays as it was
    assert train("--init-from", str(tmp_path / "base" / "last"), "--data",
                 str(tmp_path / "new.txt"), "--out", str(tmp_path / "tuned"),
                 "--max-steps", "3") == 0
    tuned = load_weights(tmp_path / "tuned" / "last")
    assert not np.array_equal(tuned["blocks.0.mlp.fc.weight"],
                              base.weights["blocks.0.mlp.fc.weight"])
    np.testing.assert_array_equal(load_weights(tmp_path / "base" / "last")["ln_f.scale"],
                                  base.weights["ln_f.scale"])


def test_an_imported_llama_fine_tunes_resumes_and_keeps_its_chat(train, tmp_path):
    tok = train_tokenizer("smollm2")
    llama_folder(tmp_path / "hf", **{**TINY, "vocab_size": tok.get_vocab_size()})
    save_tokenizer(tmp_path / "hf", tok, SMOLLM2_TEMPLATE)
    import_hf(tmp_path / "hf", tmp_path / "ck")
    args = ["--init-from", str(tmp_path / "ck"), "--data", str(tmp_path / "new.txt"),
            "--out", str(tmp_path / "ft"), "--set", "block_size=32", "--set", "dropout=0.1"]
    assert train(*args, "--max-steps", "3") == 0
    config = load_config(tmp_path / "ft" / "last")
    assert config == load_config(tmp_path / "ck").replace(block_size=32, dropout=0.1)
    assert load_checkpoint(tmp_path / "ft" / "last").tokenizer.chat["template"] == \
        SMOLLM2_TEMPLATE
    assert train(*args, "--max-steps", "5", "--resume") == 0
    assert steps(tmp_path / "ft") == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("extra, said", [
    (["--tokenizer", "char"], "leave out --tokenizer"),
    (["--set", "n_layer=3"], "not n_layer"),
    (["--set", "block_size=64"], "longer than the checkpoint's context"),
])
def test_what_the_checkpoint_decides_cannot_be_set(train, tmp_path, capsys, extra, said):
    assert train("--data", str(tmp_path / "old.txt"), "--out", str(tmp_path / "base"),
                 "--max-steps", "1") == 0
    capsys.readouterr()
    assert train("--init-from", str(tmp_path / "base"), "--data", str(tmp_path / "new.txt"),
                 "--out", str(tmp_path / "ft"), *extra) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1


def test_init_from_needs_a_new_out_and_a_checkpoint(train, tmp_path, capsys):
    assert train("--init-from", str(tmp_path / "nowhere"), "--data",
                 str(tmp_path / "new.txt")) == 2
    assert "needs --out" in capsys.readouterr().err
    assert train("--init-from", str(tmp_path / "nowhere"), "--data", str(tmp_path / "new.txt"),
                 "--out", str(tmp_path / "ft")) == 2
    assert "nowhere" in capsys.readouterr().err
