"""The fast engine's cross-entropy: F.cross_entropy's value and gradient, cheaper on a CPU."""

import pytest
import torch
import torch.nn.functional as F

from chalklm.models import loss as loss_module
from chalklm.models.loss import cross_entropy


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_value_and_gradient_equal_f_cross_entropy(smoothing, dtype, monkeypatch):
    monkeypatch.setattr(loss_module, "NUMBERS_PER_SLICE", 7 * 50)  # several slices, a ragged last
    torch.manual_seed(0)
    logits = (torch.randn(45, 50, dtype=torch.float64) * 3).to(dtype)
    targets = torch.randint(0, 50, (45,))
    targets[[3, 17, 44]] = -1  # ignored rows: no loss, no gradient
    ours_in = logits.clone().requires_grad_()
    ours = cross_entropy(ours_in, targets, -1, smoothing)
    ours.backward()
    ref_in = logits.clone().requires_grad_()
    ref = F.cross_entropy(ref_in.to(torch.promote_types(dtype, torch.float32)), targets,
                          ignore_index=-1, label_smoothing=smoothing)
    ref.backward()
    tol = {torch.float64: 1e-12, torch.float32: 1e-6, torch.bfloat16: 1e-6}[dtype]
    assert ours.dtype == ref.dtype
    assert abs(ours.item() - ref.item()) < tol * max(1.0, abs(ref.item()))
    assert ours_in.grad.dtype == dtype
    grad_tol = 1e-3 if dtype == torch.bfloat16 else tol  # the gradient is rounded to bf16
    assert torch.allclose(ours_in.grad.double(), ref_in.grad.double(), atol=grad_tol, rtol=0)
    assert torch.all(ours_in.grad[[3, 17, 44]] == 0)


def test_gradient_rows_are_softmax_minus_the_smoothed_target():
    z = torch.tensor([[1.0, 2.0, 0.5]], requires_grad=True)
    cross_entropy(z, torch.tensor([1]), label_smoothing=0.3).backward()
    q = torch.tensor([[0.1, 0.8, 0.1]])  # (1 - 0.3) * onehot + 0.3 / 3
    assert torch.allclose(z.grad, torch.softmax(z.detach(), -1) - q, atol=1e-7)
