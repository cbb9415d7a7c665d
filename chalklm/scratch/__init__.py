"""The glass box: language models built on NumPy alone, every derivative in plain sight.

Read in this order:
  autograd.py    `Tensor` and every operation, each derivative beside its forward
  nn.py          Module, Linear, Embedding, LayerNorm, RMSNorm, Dropout, Sequential
  optim.py       SGD, AdamW, clip_grad_norm
  models.py      the article's first network and first language model; GPT
  attention.py   SelfAttention (causal mask, softmax), MultiHeadAttention
  positional.py  PositionalEmbedding (learned), PositionalEncoding (sine waves)
  rope.py        rotary positions (RoPE): queries and keys turned pair by pair
  block.py       MLP and the residual Block
  gpt.py         GPT, built from the pieces above (re-exported by models.py)
Nothing here imports torch.
"""

from chalklm.scratch.autograd import (
    Tensor,
    concatenate,
    cross_entropy,
    dropout,
    exp,
    gelu,
    gelu_exact,
    is_grad_enabled,
    log,
    log_softmax,
    manual_seed,
    masked_fill,
    matmul,
    no_grad,
    relu,
    sigmoid,
    silu,
    softmax,
    sqrt,
    stack,
    tanh,
    tensor,
    where,
)

__all__ = [
    "Tensor",
    "concatenate",
    "cross_entropy",
    "dropout",
    "exp",
    "gelu",
    "gelu_exact",
    "is_grad_enabled",
    "log",
    "log_softmax",
    "manual_seed",
    "masked_fill",
    "matmul",
    "no_grad",
    "relu",
    "sigmoid",
    "silu",
    "softmax",
    "sqrt",
    "stack",
    "tanh",
    "tensor",
    "where",
]
