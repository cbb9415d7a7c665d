"""Faults: a full disk during each kind of write, and kill -9 at random moments of a run.
What the user had stays whole, every checkpoint left behind loads, and --resume ends
where an uninterrupted run ends."""

import errno
import json
import os
import random
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import chalklm.files
from chalklm.checkpoint import load_checkpoint, load_weights
from chalklm.cli import main

TINY_TOML = """
[model]
n_layer = 1
n_head = 2
n_embd = 16
block_size = 16
dropout = 0.1
[train]
batch_size = 4
max_steps = {steps}
log_interval = 1
eval_interval = 2
eval_batch_size = 16
dtype = "fp32"
device = "cpu"
sample_tokens = 0
engine = "scratch"
"""


def no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def train(tmp_path):
    """A function giving `chalklm train` args for a tiny run into tmp_path/`out`. The glass
    box trains: the loop, the checkpoints and the run folder are the engines' shared code,
    and it starts in a second where the fast engine spends several importing torch and
    measuring its peak FLOP/s (test_training covers the fast engine's exact resume)."""
    from chalklm.data.registry import load_text

    (tmp_path / "text.txt").write_text(load_text("shakespeare")[:5000])
    (tmp_path / "tiny.toml").write_text(TINY_TOML.format(steps=4))

    def args(out, *extra):
        return ["train", "--config", str(tmp_path / "tiny.toml"), "--data",
                str(tmp_path / "text.txt"), "--no-progress", "--out", str(tmp_path / out),
                *extra]

    return args


def run_cli(argv, capsys=None) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    return exit_.value.code


def contents(folder) -> dict:
    """Every file under `folder`, hidden ones too: relative path -> bytes."""
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def full_disk_refusal(capsys) -> None:
    err = capsys.readouterr().err
    assert err.startswith("chalklm: error: could not write") and err.count("\n") == 1, err
    assert "No space left on device" in err


def test_full_disk_while_saving_a_checkpoint_keeps_the_last_one(train, tmp_path, capsys,
                                                               monkeypatch):
    import safetensors.numpy

    assert run_cli(train("run", "--max-steps", "2")) == 0
    last = contents(tmp_path / "run" / "last")
    real = safetensors.numpy.save_file

    def half_then_full(tensors, filename, *args, **kwargs):
        real(tensors, filename, *args, **kwargs)
        with open(filename, "r+b") as f:  # the disk filled up half-way through the file
            f.truncate(os.path.getsize(filename) // 2)
        no_space()

    monkeypatch.setattr(safetensors.numpy, "save_file", half_then_full)
    capsys.readouterr()
    assert run_cli(train("run", "--resume", "--max-steps", "4")) == 2
    full_disk_refusal(capsys)
    assert contents(tmp_path / "run" / "last") == last
    assert sorted(p.name for p in (tmp_path / "run").glob(".*")) == [".chalklm-run"]
    monkeypatch.setattr(safetensors.numpy, "save_file", real)
    assert run_cli(train("run", "--resume", "--max-steps", "4")) == 0  # room again
    assert json.loads((tmp_path / "run" / "last" / "trainer_state.json").read_text())[
        "step"] == 4


def test_full_disk_while_logging_keeps_the_metrics_and_resume_goes_on(train, tmp_path, capsys,
                                                                      monkeypatch):
    assert run_cli(train("run", "--max-steps", "2")) == 0
    before = (tmp_path / "run" / "metrics.jsonl").read_text()

    class HalfALine:
        """A log file on a disk that fills up in the middle of the next line."""

        def __init__(self, path, mode, **kwargs):
            self.file = open(path, mode, **kwargs)

        def write(self, text):
            self.file.write(text[: len(text) // 2])
            self.file.flush()
            no_space()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    monkeypatch.setattr(chalklm.files, "open", HalfALine, raising=False)
    capsys.readouterr()
    assert run_cli(train("run", "--resume", "--max-steps", "4")) == 2
    full_disk_refusal(capsys)
    assert (tmp_path / "run" / "metrics.jsonl").read_text().startswith(before)
    monkeypatch.delattr(chalklm.files, "open")
    assert run_cli(train("run", "--resume", "--max-steps", "4")) == 0
    records = [json.loads(line) for line in
               (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 2, 3, 4, 4]


def test_full_disk_while_saving_a_tokenizer_keeps_the_old_file(train, tmp_path, capsys,
                                                               monkeypatch):
    out = tmp_path / "tok.json"
    argv = ["tokenizer", "train", "--type", "char", "--data", str(tmp_path / "text.txt"),
            "--out", str(out), "--force"]
    train("unused")  # writes the text
    assert run_cli(argv) == 0
    before = contents(tmp_path)
    monkeypatch.setattr(os, "fsync", no_space)
    capsys.readouterr()
    assert run_cli(argv) == 2
    full_disk_refusal(capsys)
    assert contents(tmp_path) == before


def test_full_disk_while_exporting_keeps_the_old_export(train, tmp_path, capsys, monkeypatch):
    assert run_cli(train("run", "--max-steps", "2", "--set", "positional=\"learned\"",
                         "--set", "bias=true", "--set", "tie_embeddings=true")) == 0
    export = ["export-hf", str(tmp_path / "run"), str(tmp_path / "hf"), "--force"]
    assert run_cli(export) == 0
    before = contents(tmp_path)
    monkeypatch.setattr(os, "fsync", no_space)
    capsys.readouterr()
    assert run_cli(export) == 2
    full_disk_refusal(capsys)
    assert contents(tmp_path) == before


# ---- kill -9 -------------------------------------------------------------------------


def _start(argv) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "chalklm", *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _again(out) -> list[str]:
    """The flag that runs `out` again: --resume from last/; --force when a kill fell
    between the first save of best/ and that of last/ (nothing to resume: start over)."""
    if (out / "last").exists() or any(out.glob(".last.old-*")):
        return ["--resume"]
    return ["--force"] if (out / "best").exists() else []


def _until_it_trains(process, marker) -> None:
    """Wait until the run has claimed its folder (it rewrites the marker: a new inode),
    so that the kill falls among steps, saves and log lines rather than imports."""
    before = marker.stat().st_ino if marker.exists() else None
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if marker.exists() and marker.stat().st_ino != before:
            return
        time.sleep(0.01)


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_nothing(train, tmp_path):
    """20 kill -9 at random moments (one in four while starting, the others while training,
    saving and logging): after each, every best/ and last/ loads; resuming then ends with
    the weights and loss of a run never killed, and leaves no temporary folder behind."""
    # decay_steps fixed: each resumed run may stop at another max_steps, same schedule
    (tmp_path / "tiny.toml").write_text(TINY_TOML.format(steps=200) + "decay_steps = 200\n")
    assert _start(train("straight")).wait() == 0
    rng = random.Random(1337)
    out = tmp_path / "killed"
    killed = 0
    for kill in range(20):
        process = _start(train("killed", *_again(out)))
        if kill % 4:
            _until_it_trains(process, out / ".chalklm-run")
        time.sleep(rng.uniform(0.0, 0.8))
        process.kill()
        _, err = process.communicate()
        assert process.returncode in (0, -9), f"kill {kill}: {err.decode()}"
        killed += process.returncode == -9
        for name in ("best", "last"):
            if (out / name).exists():
                load_checkpoint(out / name)  # a whole checkpoint, or an error here
    assert killed >= 15  # (200 steps outlast 20 kills: almost all fall in a running run)
    last = _start(train("killed", *_again(out)))
    assert last.wait() == 0, last.stderr.read().decode()
    a, b = load_weights(tmp_path / "straight" / "last"), load_weights(out / "last")
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)

    def final_loss(folder):
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        return json.loads(lines[-1])["val_loss"]

    assert final_loss(out) == final_loss(tmp_path / "straight")
    assert sorted(p.name for p in out.glob(".*")) == [".chalklm-run"]
    shutil.rmtree(out)
