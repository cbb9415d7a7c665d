"""Glass-box optimizers take exactly torch.optim's steps on the same numbers."""

import numpy as np
import pytest
import torch

from chalklm.errors import ChalkError
from chalklm.scratch import nn, optim


def _pair(seed=0, shapes=((4, 3), (3,), (5, 2))):
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours = [nn.Parameter(v) for v in values]
    theirs = [torch.tensor(v, requires_grad=True) for v in values]
    return ours, theirs, rng


def _run(ours, theirs, ours_opt, torch_opt, rng, steps=3):
    for _ in range(steps):
        for p, t in zip(ours, theirs):
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad = g.copy()
            t.grad = torch.from_numpy(g.copy())
        ours_opt.step()
        torch_opt.step()
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.9, 0.1)])
def test_sgd_matches_torch(momentum, weight_decay):
    ours, theirs, rng = _pair()
    _run(ours, theirs, optim.SGD(ours, lr=0.1, momentum=momentum, weight_decay=weight_decay),
         torch.optim.SGD(theirs, lr=0.1, momentum=momentum, weight_decay=weight_decay), rng)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_matches_torch(weight_decay):
    ours, theirs, rng = _pair(1)
    _run(ours, theirs,
         optim.AdamW(ours, lr=0.01, betas=(0.9, 0.95), weight_decay=weight_decay),
         torch.optim.AdamW(theirs, lr=0.01, betas=(0.9, 0.95), weight_decay=weight_decay),
         rng, steps=5)


def test_adamw_param_groups_decay_only_matrices():
    ours, theirs, rng = _pair(2)
    groups = lambda ps: [  # noqa: E731
        {"params": [p for p in ps if p.ndim >= 2], "weight_decay": 0.5},
        {"params": [p for p in ps if p.ndim < 2], "weight_decay": 0.0},
    ]
    opt = optim.AdamW(groups(ours), lr=0.05)
    _run(ours, theirs, opt, torch.optim.AdamW(groups(theirs), lr=0.05), rng)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.5, 0.0]


def test_learning_rate_can_change_between_steps():
    ours, theirs, rng = _pair(3)
    a, b = optim.AdamW(ours, lr=0.1), torch.optim.AdamW(theirs, lr=0.1)
    _run(ours, theirs, a, b, rng, steps=1)
    a.param_groups[0]["lr"] = b.param_groups[0]["lr"] = 0.01
    _run(ours, theirs, a, b, rng, steps=2)


def test_zero_grad_and_missing_grads():
    ours, _, _ = _pair()
    opt = optim.SGD(ours, lr=1.0)
    before = [p.data.copy() for p in ours]
    opt.step()  # no gradients yet: nothing moves
    assert all(np.array_equal(b, p.data) for b, p in zip(before, ours))
    ours[0].grad = np.ones_like(ours[0].data)
    opt.zero_grad()
    assert all(p.grad is None for p in ours)


def test_optimizer_needs_parameters():
    with pytest.raises(ChalkError):
        optim.AdamW([])


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(max_norm):
    ours, theirs, rng = _pair(4)
    for p, t in zip(ours, theirs):
        g = rng.standard_normal(p.shape).astype(np.float32)
        p.grad, t.grad = g.copy(), torch.from_numpy(g.copy())
    total = optim.clip_grad_norm(ours, max_norm)
    want = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert total == pytest.approx(want.item(), rel=1e-6)
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-6)
    if max_norm < total:
        clipped = np.sqrt(sum((p.grad.astype(np.float64) ** 2).sum() for p in ours))
        assert clipped == pytest.approx(max_norm, rel=1e-5)
