"""The fast engine (PyTorch): the same models as the glass box, built for speed."""

from chalklm.models.gpt import GPT

__all__ = ["GPT"]
