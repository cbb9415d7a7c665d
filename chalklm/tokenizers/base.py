"""What every chalklm tokenizer shares: a JSON file on disk and a fingerprint.

A tokenizer is a pure function from text to a list of ids and back. Its whole state is a
small dictionary (`to_dict`), saved as one readable JSON file whose `"type"` key says
which class reads it back. The fingerprint is the sha256 of that dictionary written in
one canonical way, so two tokenizers that would encode every text alike share it (the
trainer keys its cache of encoded datasets on it).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from chalklm.errors import TokenizerError
from chalklm.files import write_atomic


def canonical_json(data: dict[str, Any]) -> str:
    """One spelling per value: sorted keys, no spaces, ASCII only."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """Write readable JSON atomically."""
    write_atomic(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a tokenizer JSON file; a missing or corrupt file is a `TokenizerError`."""
    path = Path(path)
    if not path.is_file():
        raise TokenizerError(
            f"{path}: no such tokenizer file; train one with "
            "`chalklm tokenizer train` or give the right path"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"{path}: not a tokenizer JSON file ({exc})") from None
    if not isinstance(data, dict) or "type" not in data:
        raise TokenizerError(f'{path}: not a chalklm tokenizer file (no "type" key)')
    return data


class Tokenizer:
    """The interface: `encode`, `decode`, `vocab_size`, `save`/`load`, `fingerprint`."""

    type_name = ""  # the "type" key of the JSON file

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The whole state, as plain JSON values, including `"type"`."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tokenizer:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """sha256 (hex) of the canonical JSON of `to_dict()`: equal state, equal fingerprint."""
        return hashlib.sha256(canonical_json(self.to_dict()).encode("utf-8")).hexdigest()

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        data = read_json(path)
        if data["type"] != cls.type_name:
            raise TokenizerError(
                f"{path}: holds a {data['type']!r} tokenizer, not {cls.type_name!r}; "
                "use chalklm.tokenizers.load_tokenizer to read any kind"
            )
        return _from_dict_checked(cls, data, path)

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.fingerprint())


def _from_dict_checked(cls, data: dict[str, Any], path) -> Tokenizer:
    """`cls.from_dict`, turning a malformed file's KeyError/TypeError into one clear line."""
    try:
        return cls.from_dict(data)
    except TokenizerError as exc:
        raise TokenizerError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise TokenizerError(
            f"{path}: corrupt {cls.type_name!r} tokenizer file ({type(exc).__name__}: {exc})"
        ) from None
