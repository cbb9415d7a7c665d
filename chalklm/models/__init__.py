"""The fast engine (PyTorch): the same models as the glass box, built for speed."""

from chalklm.models.gpt import GPT
from chalklm.models.transformer import Transformer

__all__ = ["GPT", "Transformer"]
