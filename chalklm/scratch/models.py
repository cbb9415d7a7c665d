"""Whole models built from the glass box's layers, in the order the article meets them.

- `SimpleNetwork`: the article's first network. A few input numbers, one hidden layer of
  neurons, a few output neurons; what the numbers mean is up to whoever feeds it.
- `NextCharacterModel`: the first language model. It reads the previous few characters
  and scores every character of the vocabulary as the next one.
"""

from __future__ import annotations

import numpy as np

from chalklm.errors import ConfigError, ShapeError
from chalklm.scratch.autograd import Tensor
from chalklm.scratch.nn import Embedding, Linear, Module
from chalklm.scratch.probability import cross_entropy


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, (int, np.integer)) or value <= 0:
            raise ConfigError(f"{name} must be a whole number above 0, got {value!r}")


class SimpleNetwork(Module):
    """inputs -> hidden neurons (weighted sum + bias, then tanh) -> output neurons.

    Each neuron adds up its inputs, each multiplied by a weight, plus a bias. The hidden
    neurons then squash that sum with tanh (the activation), without which two layers
    would collapse into one weighted sum. The outputs stay plain sums: the reading is
    "whichever output neuron is larger", so they need no squashing.
    """

    def __init__(self, inputs: int = 4, hidden: int = 3, outputs: int = 2):
        _check_sizes(inputs=inputs, hidden=hidden, outputs=outputs)
        self.hidden = Linear(inputs, hidden)
        self.output = Linear(hidden, outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self.hidden(x).tanh())


class NextCharacterModel(Module):
    """Scores for the next character, from the ids of the `context` characters before it.

    Each character id looks up its embedding (a learned row of `embedding_dim` numbers);
    the context's rows are laid end to end into one long input; a hidden layer of tanh
    neurons reads it; the output layer gives one score (logit) per vocabulary character,
    which softmax turns into chances. Parameter names: `embedding.weight`,
    `hidden.weight`/`.bias`, `output.weight`/`.bias`.
    """

    def __init__(self, vocab_size: int, context: int = 8, embedding_dim: int = 16,
                 hidden: int = 256):
        _check_sizes(vocab_size=vocab_size, context=context, embedding_dim=embedding_dim,
                     hidden=hidden)
        self.vocab_size, self.context = vocab_size, context
        self.embedding = Embedding(vocab_size, embedding_dim)
        self.hidden = Linear(context * embedding_dim, hidden)
        self.output = Linear(hidden, vocab_size)

    def forward(self, ids, targets=None) -> tuple[Tensor, Tensor | None]:
        """ids (batch, context) -> (logits (batch, vocab_size), mean cross-entropy or None)."""
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.shape[1] != self.context:
            raise ShapeError(f"NextCharacterModel reads ids of shape (batch, {self.context}), "
                             f"got {ids.shape}")
        vectors = self.embedding(ids)  # (batch, context, embedding_dim)
        # Reshaping (batch, context, dim) to (batch, context * dim) lays each example's
        # vectors end to end: exactly their concatenation, in context order.
        joined = vectors.reshape(ids.shape[0], -1)
        logits = self.output(self.hidden(joined).tanh())
        loss = cross_entropy(logits, targets) if targets is not None else None
        return logits, loss


# The GPT lives in its own file (like the fast engine's chalklm/models/gpt.py); it is
# re-exported here so every glass-box model is found in one place.
from chalklm.scratch.gpt import GPT  # noqa: E402, F401
from chalklm.scratch.transformer import Transformer  # noqa: E402, F401
