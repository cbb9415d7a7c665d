"""The assertions that prove two engines equal, shared by the GPT tests of each design."""

import numpy as np
import torch


def assert_same_logits_loss_and_gradients(glass, fast, *arrays):
    """Given the same inputs (numpy arrays: ids and targets for a GPT; source, target in
    and target out for a Transformer): logits and loss within 1e-5, every gradient within
    1e-5 + 1e-4 relative, and the same parameter names (tests/test_gpt_equivalence.py says
    why these tolerances). Returns the glass box's logits."""
    logits, loss = glass(*arrays)
    loss.backward()
    t_logits, t_loss = fast(*(torch.from_numpy(a) for a in arrays))
    t_loss.backward()
    np.testing.assert_allclose(logits.data, t_logits.detach().numpy(), rtol=0, atol=1e-5)
    assert abs(loss.item() - t_loss.item()) < 1e-5
    theirs = dict(fast.named_parameters())
    assert set(theirs) == {name for name, _ in glass.named_parameters()}
    for name, p in glass.named_parameters():
        np.testing.assert_allclose(p.grad, theirs[name].grad.numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=name)
    return logits


def assert_one_adamw_step_leaves_equal_weights(glass, fast, ids, targets):
    from chalklm.scratch import optim

    glass(ids, targets)[1].backward()
    fast(torch.from_numpy(ids), torch.from_numpy(targets))[1].backward()
    optim.AdamW(glass.parameters(), lr=1e-3, weight_decay=0.1).step()
    torch.optim.AdamW(fast.parameters(), lr=1e-3, weight_decay=0.1).step()
    theirs = dict(fast.named_parameters())
    for name, p in glass.named_parameters():
        np.testing.assert_allclose(p.data, theirs[name].detach().numpy(), rtol=0, atol=1e-5,
                                   err_msg=name)
