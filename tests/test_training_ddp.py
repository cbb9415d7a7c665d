"""Distributed data parallel: 2 processes (gloo, CPU) take the same steps as 1 process
accumulating the gradients of 2 micro-batches, so both end with the same weights."""

import os
import subprocess
import sys

import numpy as np
import torch

from chalklm.checkpoint import load_weights
from chalklm.config import GPTConfig
from chalklm.data.registry import load_text
from chalklm.models import GPT

MODEL = dict(n_layer=2, n_head=2, n_embd=16, block_size=16)

TOML = """
[model]
n_layer = 2
n_head = 2
n_embd = 16
block_size = 16
dropout = 0.0
[train]
batch_size = 4
max_steps = 4
learning_rate = 1e-2
warmup_steps = 1
eval_interval = 100
log_interval = 1
eval_batch_size = 16
dtype = "fp32"
device = "cpu"
sample_tokens = 10
"""


def train(tmp_path, out, launcher, grad_accum):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["-m", "chalklm", "train", "--config", str(tmp_path / "tiny.toml"), "--data",
            str(tmp_path / "text.txt"), "--out", str(tmp_path / out), "--set",
            f"grad_accum={grad_accum}"]
    result = subprocess.run([sys.executable, *launcher, *args], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_two_processes_match_one_process_accumulating_two(tmp_path, data_dir):
    (tmp_path / "text.txt").write_text(load_text("shakespeare")[:20_000])
    (tmp_path / "tiny.toml").write_text(TOML)
    # --standalone: torchrun binds its rendezvous store to a port the system picks (port 0)
    # and hands that store to the workers. A port found free beforehand could be taken by
    # another program before torchrun binds it.
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    ddp = train(tmp_path, "ddp", torchrun, grad_accum=1)
    train(tmp_path, "single", [], grad_accum=2)
    assert ddp.stdout.count("validation loss") == 1  # rank 0 alone reports
    a, b = load_weights(tmp_path / "ddp" / "last"), load_weights(tmp_path / "single" / "last")
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=2e-6, err_msg=name)
    # and the 4 steps did move the weights away from their (seeded) initial values
    torch.manual_seed(1337)
    vocab = len(set((tmp_path / "text.txt").read_text()))
    init = GPT(GPTConfig(vocab_size=vocab, **MODEL)).state_dict()
    assert np.abs(a["blocks.0.mlp.fc.weight"] - init["blocks.0.mlp.fc.weight"].numpy()).max() \
        > 1e-3
