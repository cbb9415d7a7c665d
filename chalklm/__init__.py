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

__all__ = [
    "ChalkError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ShapeError",
    "TokenizerError",
    "__version__",
]
