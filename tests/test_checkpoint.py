"""Checkpoint folders: round trips, atomic saves, and one clear line for damaged ones."""

import errno
import subprocess
import sys

import numpy as np
import pytest

from chalklm import checkpoint as ckpt
from chalklm.config import GPTConfig
from chalklm.errors import CheckpointError
from chalklm.tokenizers import CharTokenizer

CONFIG = GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4)


def weights(value: float) -> dict[str, np.ndarray]:
    return {"token_embedding.weight": np.full((5, 4), value, np.float32),
            "ln_f.scale": np.arange(4, dtype=np.float32) + value}


def save(folder, value, **extra):
    return ckpt.save_checkpoint(folder, weights(value), CONFIG, CharTokenizer("abcde"), **extra)


def test_round_trip(tmp_path):
    save(tmp_path / "c", 1.5, optimizer={"exp_avg.x": np.ones(3, np.float32)},
         trainer_state={"step": 7})
    loaded = ckpt.load_checkpoint(tmp_path / "c")
    assert loaded.config == CONFIG
    assert loaded.tokenizer.encode("bad") == [1, 0, 3]
    for name, value in weights(1.5).items():
        np.testing.assert_array_equal(loaded.weights[name], value)
    optimizer, state = loaded.resume_state()
    assert state == {"step": 7} and optimizer["exp_avg.x"].tolist() == [1, 1, 1]


def test_torch_tensors_are_saved_too(tmp_path):
    import torch

    ckpt.save_checkpoint(tmp_path / "c", {"w": torch.ones(2, 3).t()}, CONFIG)
    assert ckpt.load_weights(tmp_path / "c")["w"].shape == (3, 2)


def test_run_folder_resolves_to_best(tmp_path):
    save(tmp_path / "run" / "last", 1.0)
    save(tmp_path / "run" / "best", 2.0)
    assert ckpt.resolve(tmp_path / "run") == tmp_path / "run" / "best"
    assert ckpt.load_weights(tmp_path / "run")["ln_f.scale"][0] == 2.0


def test_load_weights_needs_no_torch(tmp_path):
    save(tmp_path / "c", 3.0)
    code = ("import sys; from chalklm.checkpoint import load_weights; "
            f"w = load_weights({str(tmp_path / 'c')!r}); "
            "assert 'torch' not in sys.modules, 'torch was imported'; "
            "print(float(w['ln_f.scale'][1]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "4.0"


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    opt = {"exp_avg.x": np.zeros(2, np.float32)}
    save(tmp_path / "c", 1.0, optimizer=opt, trainer_state={"step": 1})

    def broken_save(self, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(CharTokenizer, "save", broken_save)
    with pytest.raises(CheckpointError, match="No space left on device; what was there"):
        save(tmp_path / "c", 2.0, optimizer=opt, trainer_state={"step": 2})
    loaded = ckpt.load_checkpoint(tmp_path / "c")
    assert loaded.weights["ln_f.scale"][0] == 1.0
    assert loaded.resume_state()[1] == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no partial folder left


def test_disk_full_inside_safetensors_is_a_checkpoint_error(tmp_path, monkeypatch):
    import safetensors.numpy

    save(tmp_path / "c", 1.0)

    def disk_full(arrays, path):
        raise safetensors.SafetensorError("Error while serializing: I/O error: No space left "
                                          "on device (os error 28)")

    monkeypatch.setattr(safetensors.numpy, "save_file", disk_full)
    with pytest.raises(CheckpointError, match=r"c: .*No space left on device.* unchanged"):
        save(tmp_path / "c", 2.0)
    assert ckpt.load_checkpoint(tmp_path / "c").weights["ln_f.scale"][0] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_a_file_in_the_way_of_the_folder_is_a_checkpoint_error(tmp_path):
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(CheckpointError, match="could not write"):
        save(tmp_path / "run" / "best", 1.0)
    assert (tmp_path / "run").read_text() == "not a folder"


def test_a_checkpoint_folder_is_an_ordinary_folder(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        save(tmp_path / "c", 1.0)
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "c").stat().st_mode) == 0o755  # not mkdtemp's 0o700


def test_crash_between_the_two_renames_loses_nothing(tmp_path, monkeypatch):
    save(tmp_path / "c", 1.0)
    real_replace = ckpt.os.replace

    def crash_on_second(src, dst):
        if dst == tmp_path / "c" and not (tmp_path / "c").exists():
            raise KeyboardInterrupt  # the process dies after moving the old copy aside
        real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path / "c", 2.0)
    monkeypatch.undo()
    assert not (tmp_path / "c").exists()
    assert ckpt.load_weights(tmp_path / "c")["ln_f.scale"][0] == 1.0
    save(tmp_path / "c", 3.0)  # the next save works and cleans up
    assert ckpt.load_weights(tmp_path / "c")["ln_f.scale"][0] == 3.0


def test_overwrite_replaces_the_whole_folder(tmp_path):
    save(tmp_path / "c", 1.0, optimizer={"a": np.zeros(1, np.float32)})
    save(tmp_path / "c", 2.0)
    assert not (tmp_path / "c" / ckpt.OPTIMIZER_FILE).exists()
    assert ckpt.load_weights(tmp_path / "c")["ln_f.scale"][0] == 2.0


@pytest.mark.parametrize("damage,match", [
    (lambda c: (c / "model.safetensors").unlink(), "model.safetensors: missing"),
    (lambda c: (c / "model.safetensors").write_bytes(b"\x10\x00garbage"), "corrupt"),
    (lambda c: (c / "config.json").write_text("{not json"), "corrupt JSON"),
    (lambda c: (c / "config.json").unlink(), "config.json: missing"),
    (lambda c: (c / "config.json").write_text('{"model_type": "gpt", "n_head": 5}'),
     "invalid config"),
    (lambda c: (c / "config.json").write_text('{"model_type": "rnn"}'), "unknown model_type"),
    (lambda c: (c / "tokenizer.json").unlink(), "tokenizer.json: missing"),
])
def test_damaged_checkpoints_are_one_line_errors(tmp_path, damage, match):
    save(tmp_path / "c", 1.0)
    damage(tmp_path / "c")
    with pytest.raises(CheckpointError, match=match) as info:
        ckpt.load_checkpoint(tmp_path / "c")
    assert "\n" not in str(info.value)


def test_missing_folder_and_missing_resume_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        ckpt.load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        ckpt.load_checkpoint(tmp_path / "empty")
    save(tmp_path / "c", 1.0)
    with pytest.raises(CheckpointError, match="optimizer.safetensors: missing"):
        ckpt.load_checkpoint(tmp_path / "c").resume_state()


def test_read_safetensors_as_reads_each_tensor_in_the_asked_dtype(tmp_path):
    """The plain-read loader behind chalklm.load gives safetensors' own tensors, cast;
    a file cut short is one clear error."""
    import torch
    from safetensors.torch import load_file, save_file

    tensors = {"a": torch.randn(3, 5), "b": torch.randn(7).to(torch.bfloat16),
               "c": torch.arange(4, dtype=torch.int64), "empty": torch.zeros(0, 2)}
    save_file(tensors, tmp_path / "w.safetensors", metadata={"format": "pt"})
    expected = load_file(tmp_path / "w.safetensors")
    for dtype in (torch.float32, torch.bfloat16):
        got = ckpt.read_safetensors_as(tmp_path / "w.safetensors", dtype)
        assert set(got) == set(expected)
        for name, tensor in expected.items():
            assert got[name].dtype == dtype and got[name].shape == tensor.shape
            torch.testing.assert_close(got[name], tensor.to(dtype), rtol=0, atol=0)
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-5])
    with pytest.raises(CheckpointError, match="cut short"):
        ckpt.read_safetensors_as(tmp_path / "cut.safetensors", torch.float32)
