"""A model's parameters side by side in one buffer per optimizer group.

Why: on a CPU, a small model's update costs more in bookkeeping per tensor than in
arithmetic. The benchmark's small GPT has 68 parameter tensors; for each of them PyTorch's
fused AdamW walks a Python loop and bumps a step counter, and `clip_grad_norm_` takes a
norm and a product: about 2 ms of a 21 ms training step. When every parameter is a view
into one flat buffer per group (weight decay or not), and every gradient a view into a
second one, the optimizer and the clipping see two tensors instead: the same arithmetic
(the gradient norm summed in another order, so equal up to rounding), 0.5-0.75 ms less
a step. Apex's FusedAdam and FSDP's FlatParameter do the same.

The model does not notice: its parameters keep their names, shapes and values, autograd
adds each new gradient into its view, and state dicts read and write through the views.
One thing breaks it: setting a parameter's `.grad` to None (`model.zero_grad()` does),
after which its gradient lands outside the buffer; zero them with `zero_grad` here.
"""

from __future__ import annotations

import torch


class FlatParameters:
    """`groups`: lists of parameters (each list one optimizer group); `names`: parameter
    -> its name in the model. After this, `buffers[i]` is group i as one 1-D parameter
    whose `.grad` holds all of the group's gradients."""

    def __init__(self, groups: list[list[torch.nn.Parameter]], names: dict):
        self.params = [p for group in groups for p in group]
        self.buffers: list[torch.nn.Parameter] = []
        self.where: dict[str, tuple[int, slice, torch.Size]] = {}  # name -> (buffer, span, shape)
        for group in groups:
            data = torch.cat([p.detach().reshape(-1) for p in group])
            grad = torch.zeros_like(data)
            start = 0
            for p in group:
                span = slice(start, start + p.numel())
                p.data = data[span].view_as(p)
                p.grad = grad[span].view_as(p)
                self.where[names[p]] = (len(self.buffers), span, p.shape)
                start = span.stop
            buffer = torch.nn.Parameter(data)
            buffer.grad = grad
            self.buffers.append(buffer)

    def zero_grad(self) -> None:
        """Zero the gradients in place (they must stay views: never set them to None)."""
        for buffer in self.buffers:
            buffer.grad.zero_()

    def updated(self) -> None:
        """Call after writing the buffers: the parameters' own version counters do not see
        writes through the buffer, and readers that keep derived copies of a weight
        (`chalklm.models.decode_weights`) check those counters."""
        torch.autograd.graph.increment_version(self.params)

    def split(self, flat: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-buffer tensors (optimizer moments, say) as name -> view shaped like the
        parameter."""
        return {name: flat[i][span].view(shape) for name, (i, span, shape) in self.where.items()}

    def join(self, arrays: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The inverse of `split`: one flat tensor per buffer (zeros where a name is missing)."""
        flat = [torch.zeros_like(b.detach()) for b in self.buffers]
        for name, (i, span, _) in self.where.items():
            if name in arrays:
                flat[i][span] = arrays[name].reshape(-1).to(flat[i].device, flat[i].dtype)
        return flat
