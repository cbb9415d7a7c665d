"""The glass box: language models built on NumPy alone, every derivative in plain sight.

Read in this order:
  autograd.py    `Tensor`: the graph, backward (the chain rule), arithmetic (+ - * / @)
  elementwise.py exp, log, tanh, ReLU, GELU, SiLU, ...: each derivative beside its forward
                 (each family below also makes its ops Tensor methods: x.exp() is exp(x))
  reductions.py  sum, mean, max
  shapes.py      reshape, transpose, index (gather), concatenate, stack, where
  probability.py softmax, log_softmax, cross_entropy, dropout
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

# Each op family gives the Tensor its methods when imported (x.exp(), x.sum(), x.T, ...),
# so the package imports all four, reductions too, whose sum and max stay unexported.
from chalklm.scratch import reductions  # noqa: F401
from chalklm.scratch.autograd import (
    Tensor,
    is_grad_enabled,
    manual_seed,
    matmul,
    no_grad,
    tensor,
)
from chalklm.scratch.elementwise import exp, gelu, gelu_exact, log, relu, sigmoid, silu, sqrt, tanh
from chalklm.scratch.probability import cross_entropy, dropout, log_softmax, softmax
from chalklm.scratch.shapes import concatenate, masked_fill, stack, where

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
