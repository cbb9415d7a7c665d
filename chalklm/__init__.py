"""chalklm: language models built from additions and multiplications, with nothing hidden.

Floors, lowest first (a floor never imports a higher one):
  errors, config          ground floor: plain Python, importable anywhere
  scratch, tokenizers     the glass box (NumPy only) and the tokenizers
  data                    dataset registry and batching
  models                  the fast engine (PyTorch)
  training, generation, interop
  cli                     the `chalklm` command
"""

from chalklm.errors import (
    ChalkError,
    CheckpointError,
    ConfigError,
    DataError,
    ShapeError,
    TokenizerError,
)

__version__ = "0.1.0"

# The front door, imported on first use (so `import chalklm` does not import torch):
#   model, tokenizer = chalklm.load(DIR, engine="torch" | "scratch")
#   chalklm.generate(model, ids, max_new_tokens, temperature=..., top_k=...)
#   chalklm.stream(...)   the same, one Step per new token
_LAZY = {"load": "chalklm.generation", "generate": "chalklm.generation",
         "stream": "chalklm.generation"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'chalklm' has no attribute {name!r}")


__all__ = [
    "ChalkError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ShapeError",
    "TokenizerError",
    "__version__",
    "generate",
    "load",
    "stream",
]
