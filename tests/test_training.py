"""The training loop: exact resume, clean stops, divergence, batches, sampling, engines."""

import json
import math
import re

import numpy as np
import pytest

from chalklm.checkpoint import load_checkpoint, load_weights
from chalklm.cli import main
from chalklm.data.batches import TokenBatches, load_tokens, token_file_path
from chalklm.data.registry import load_text
from chalklm.errors import ChalkError, ConfigError
from chalklm.tokenizers import CharTokenizer
from chalklm.training.config import TrainConfig, load_run_config
from chalklm.training.trainer import Trainer, learning_rate

TINY_TOML = """
[model]
n_layer = 2
n_head = 2
n_embd = 16
block_size = 16
dropout = 0.1
[train]
batch_size = 4
grad_accum = 2
max_steps = 20
learning_rate = 3e-3
warmup_steps = 5
decay_steps = 20
log_interval = 1
eval_interval = 10
eval_batch_size = 16
dtype = "fp32"
device = "cpu"
sample_tokens = 20
"""


@pytest.fixture
def tiny(tmp_path, data_dir):
    """A small text and a tiny config; returns a function giving `chalklm train` args."""
    text = load_text("shakespeare")[:20_000]
    (tmp_path / "text.txt").write_text(text)
    (tmp_path / "tiny.toml").write_text(TINY_TOML)

    def args(out, *extra):
        return ["train", "--config", str(tmp_path / "tiny.toml"), "--data",
                str(tmp_path / "text.txt"), "--out", str(tmp_path / out), *extra]

    return args


def run_cli(argv) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


def losses(folder) -> dict[int, float]:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train_loss"] for r in records if "train_loss" in r}


def test_learning_rate_warms_up_then_decays_to_min_lr():
    cfg = TrainConfig(learning_rate=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=100)
    rates = [learning_rate(s, s / 100, cfg) for s in range(101)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3, rel=0.03)
    assert all(a <= b for a, b in zip(rates[:10], rates[1:10]))
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert rates[100] == pytest.approx(1e-4)


def test_resume_continues_exactly(tiny, tmp_path):
    assert run_cli(tiny("straight", "--max-steps", "20")) == 0
    assert run_cli(tiny("resumed", "--max-steps", "10")) == 0
    assert run_cli(tiny("resumed", "--max-steps", "20", "--resume")) == 0
    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    assert sorted(resumed) == list(range(1, 21))
    assert [straight[s] for s in range(1, 21)] == [resumed[s] for s in range(1, 21)]
    a = load_weights(tmp_path / "straight" / "last")
    b = load_weights(tmp_path / "resumed" / "last")
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert (tmp_path / "straight" / "loss.png").stat().st_size > 1000
    assert len((tmp_path / "straight" / "sample.txt").read_text()) > 20


def test_resume_with_other_batches_per_step_says_so(tiny, capsys):
    assert run_cli(tiny("run", "--max-steps", "4", "--set", "sample_tokens=0")) == 0
    capsys.readouterr()
    assert run_cli(tiny("run", "--max-steps", "6", "--resume", "--set", "sample_tokens=0")) == 0
    assert "micro-batch" not in capsys.readouterr().err  # the same: continues exactly
    assert run_cli(tiny("run", "--max-steps", "8", "--resume", "--set", "grad_accum=3",
                        "--set", "sample_tokens=0")) == 0  # the tiny config accumulates 2
    assert "took 2 micro-batch(es) a step" in capsys.readouterr().err


def test_loss_falls_and_metrics_are_complete(tiny, tmp_path, capsys):
    assert run_cli(tiny("run", "--max-steps", "60", "--set", "eval_interval=30",
                        "--set", "learning_rate=1e-2", "--set", "decay_steps=0",
                        "--set", "dropout=0.0")) == 0
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().split("\n")
               if x]
    at_30 = [r["val_loss"] for r in records if r["step"] == 30 and "val_loss" in r]
    # each evaluation is a plain line of its own (the final one: the summary line)
    assert f"step 30: validation loss {at_30[0]:.4f} (best " in capsys.readouterr().out
    first, last = records[0], [r for r in records if "train_loss" in r][-1]
    assert {"step", "train_loss", "lr", "grad_norm", "tokens_per_s"} <= set(first)
    assert last["train_loss"] < first["train_loss"] - 0.5
    vals = [r["val_loss"] for r in records if "val_loss" in r]
    assert len(vals) >= 2 and vals[-1] < math.log(CharTokenizer(load_text(
        str(tmp_path / "text.txt"))).vocab_size)
    best = load_checkpoint(tmp_path / "run")  # the run folder resolves to best/
    assert best.path.name == "best"


def test_existing_run_is_not_overwritten(tiny, tmp_path, capsys):
    assert run_cli(tiny("run", "--max-steps", "2")) == 0
    before = (tmp_path / "run" / "last" / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert run_cli(tiny("run", "--max-steps", "2")) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (tmp_path / "run" / "last" / "model.safetensors").read_bytes() == before
    assert run_cli(tiny("fresh", "--resume")) == 2
    capsys.readouterr()
    assert run_cli(tiny("run", "--resume", "--set", "n_embd=32")) == 2
    assert "checkpoint's model has n_embd=16" in capsys.readouterr().err


def test_time_budget_stops_cleanly_evaluates_and_saves(tiny, tmp_path, capsys):
    assert run_cli(tiny("run", "--max-steps", "100000", "--time-budget", "4s",
                        "--set", "decay_steps=0")) == 0
    assert "stopped by time_budget" in capsys.readouterr().out
    state = json.loads((tmp_path / "run" / "last" / "trainer_state.json").read_text())
    assert 0 < state["step"] < 100000
    # (how much of the 4 s the steps used depends on the machine's load: not asserted)
    assert state["elapsed"] > 0
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert "val_loss" in json.loads(records[-1])


def test_divergence_stops_with_a_clear_message_keeping_the_last_good_checkpoint(
        tiny, tmp_path, monkeypatch):
    from chalklm.training.engines import TorchEngine

    real_step, calls = TorchEngine.train_step, []

    def step_that_blows_up(self, batches, lr):
        calls.append(1)
        loss, norm = real_step(self, batches, lr)
        return (math.nan, norm) if len(calls) == 13 else (loss, norm)

    monkeypatch.setattr(TorchEngine, "train_step", step_that_blows_up)
    model_keys, cfg = load_run_config(str(tmp_path / "tiny.toml"),
                                      [f"data={tmp_path / 'text.txt'}",
                                       f"out={tmp_path / 'run'}"])
    with pytest.raises(ChalkError, match=r"loss became nan at step 13.*step 10"):
        Trainer(model_keys, cfg).run()
    state = json.loads((tmp_path / "run" / "last" / "trainer_state.json").read_text())
    assert state["step"] == 10


def test_sample_cli(tiny, tmp_path, capsys):
    assert run_cli(tiny("run", "--max-steps", "3")) == 0
    capsys.readouterr()
    argv = ["sample", "--checkpoint", str(tmp_path / "run"), "--prompt", "ROMEO:",
            "--max-new-tokens", "30", "--temperature", "0.8", "--top-k", "5", "--seed", "1"]
    assert run_cli(argv) == 0
    first = capsys.readouterr().out
    assert first.startswith("ROMEO:") and len(first) >= 36
    assert run_cli(argv) == 0
    assert capsys.readouterr().out == first  # same seed, same text
    assert run_cli(argv[:3] + ["--prompt", "caf\u00e9 \u2603"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search("not in the vocabulary", err)
    assert "--prompt" in err and "unknown=" not in err  # the command's advice, not the API's
    assert run_cli(argv[:3] + ["--prompt", "RO", "--max-new-tokens", "3", "--dtype", "bf16"]) == 0


def test_batches_are_shifted_windows_fixed_by_seed_and_index():
    tokens = np.arange(1000, dtype=np.uint16)
    data = TokenBatches(tokens, block_size=8, split="train")
    x, y = data.batch(4, seed=1, index=3)
    assert x.shape == (4, 8) and np.array_equal(y, x + 1)
    assert np.array_equal(data.batch(4, seed=1, index=3)[0], x)
    assert not np.array_equal(data.batch(4, seed=1, index=4)[0], x)
    assert x.max() < 900  # train windows stay in the first 90%


def test_validation_pass_covers_every_token_once():
    tokens = np.arange(105, dtype=np.uint16)
    val = TokenBatches(tokens, block_size=3, split="val", val_fraction=0.5)
    seen = np.concatenate([x.ravel() for x, _ in val.sequential(batch_size=4)])
    targets = np.concatenate([y.ravel() for _, y in val.sequential(batch_size=4)])
    assert np.array_equal(seen, np.arange(53, 104))
    assert np.array_equal(targets, seen + 1)


def test_token_cache_is_keyed_by_tokenizer(tmp_path, monkeypatch):
    text_file = tmp_path / "t.txt"
    text_file.write_text("hello world, hello chalk")
    a, b = CharTokenizer("helo wrd,cak"), CharTokenizer("helo wrd,cak!")
    ids = load_tokens(str(text_file), a)
    assert a.decode(ids) == text_file.read_text()
    assert token_file_path(str(text_file), a.fingerprint()) != \
        token_file_path(str(text_file), b.fingerprint())
    monkeypatch.setattr(CharTokenizer, "encode", lambda *a: pytest.fail("encoded twice"))
    assert np.array_equal(load_tokens(str(text_file), a), ids)


def test_scratch_engine_trains_the_glass_box(tiny, tmp_path, capsys):
    argv = tiny("glass", "--engine", "scratch", "--max-steps", "60", "--set", "dropout=0.0",
                "--set", "eval_interval=100", "--set", "learning_rate=1e-2",
                "--set", "decay_steps=0")
    assert run_cli(argv) == 0
    loss = losses(tmp_path / "glass")
    assert loss[60] < loss[1] - 0.5
    capsys.readouterr()
    assert run_cli(["sample", "--checkpoint", str(tmp_path / "glass"), "--engine", "scratch",
                    "--prompt", "A", "--max-new-tokens", "5", "--temperature", "0"]) == 0
    glass = capsys.readouterr().out
    assert run_cli(["sample", "--checkpoint", str(tmp_path / "glass"), "--prompt", "A",
                    "--max-new-tokens", "5", "--temperature", "0"]) == 0
    assert capsys.readouterr().out == glass  # greedy text is the same in both engines


def test_scratch_engine_refuses_torchrun(monkeypatch):
    from chalklm.training.distributed import Distributed
    from chalklm.training.scratch_engine import ScratchEngine

    with pytest.raises(ConfigError, match="without torchrun"):
        ScratchEngine(None, TrainConfig(), Distributed(rank=0, world_size=2))


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])  # Ctrl-C; kill, timeout
def test_ctrl_c_or_sigterm_finishes_the_step_then_evaluates_and_saves(tiny, tmp_path,
                                                                        monkeypatch, signame):
    import os
    import signal

    from chalklm.training.engines import TorchEngine

    signum = getattr(signal, signame)
    real_step, calls = TorchEngine.train_step, []

    def step_then_signal(self, batches, lr):
        calls.append(1)
        if len(calls) == 3:  # as if the user pressed Ctrl-C (or ran `kill`) during step 3
            os.kill(os.getpid(), signum)
        return real_step(self, batches, lr)

    monkeypatch.setattr(TorchEngine, "train_step", step_then_signal)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    model_keys, cfg = load_run_config(str(tmp_path / "tiny.toml"),
                                      [f"data={tmp_path / 'text.txt'}",
                                       f"out={tmp_path / 'run'}"])
    summary = Trainer(model_keys, cfg).run()
    assert summary["stopped_by"] == "interrupt" and summary["step"] == 3
    state = json.loads((tmp_path / "run" / "last" / "trainer_state.json").read_text())
    assert state["step"] == 3
    # Ctrl-C and SIGTERM work as usual again
    assert {s: signal.getsignal(s) for s in before} == before
