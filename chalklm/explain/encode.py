"""Arrays as JSON: compact for the page, plain lists for people reading the API by hand.

A trace holds over a million numbers (a 64-token prompt on the 6-layer, 384-wide model).
As JSON text that is megabytes and a second of formatting; so by default each array
becomes `{"shape": [...], "dtype": "float16", "base64": "..."}`: its numbers as
little-endian float16 (about 3 significant digits, 2 bytes each), which the page reads
back with a DataView. `encoding="lists"` gives nested lists rounded to 4 significant
digits instead, with null for minus infinity (a masked score).
"""

from __future__ import annotations

import base64

import numpy as np

ENCODINGS = ("float16", "lists")


def round_significant(values: np.ndarray, digits: int = 4) -> np.ndarray:
    """Each number rounded to `digits` significant digits (0 and infinities unchanged)."""
    out = np.asarray(values, dtype=np.float64).copy()
    normal = np.isfinite(out) & (out != 0)
    magnitude = np.floor(np.log10(np.abs(out[normal])))
    scale = 10.0 ** (digits - 1 - magnitude)
    out[normal] = np.round(out[normal] * scale) / scale
    return out


def encode_array(values: np.ndarray, encoding: str) -> dict | list:
    values = np.asarray(values)
    if encoding == "float16":
        data = np.ascontiguousarray(values, dtype="<f2").tobytes()
        return {"shape": list(values.shape), "dtype": "float16",
                "base64": base64.b64encode(data).decode("ascii")}
    rounded = round_significant(values)
    if np.isfinite(rounded).all():
        return rounded.tolist()
    boxed = rounded.astype(object)
    boxed[~np.isfinite(rounded)] = None
    return boxed.tolist()


def encode(tree, encoding: str = "float16"):
    """The same tree with every NumPy array (and NumPy number) made JSON-ready."""
    if isinstance(tree, np.ndarray):
        return encode_array(tree, encoding)
    if isinstance(tree, dict):
        return {key: encode(value, encoding) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [encode(value, encoding) for value in tree]
    if isinstance(tree, np.generic):
        return tree.item()
    return tree


def decode_array(value) -> np.ndarray:
    """The inverse of `encode_array` (for Python clients and tests)."""
    if isinstance(value, dict):
        raw = base64.b64decode(value["base64"])
        return np.frombuffer(raw, dtype="<f2").astype(np.float32).reshape(value["shape"])
    return np.array(value, dtype=np.float64)
