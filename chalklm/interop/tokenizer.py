"""Tokenizers in Hugging Face's `tokenizer.json` format, both ways.

A BPE tokenizer knows its own HF form (`BPETokenizer.save_hf` / `from_hf`). A character
tokenizer is written here as the simplest HF pipeline that does the same thing: split the
text into single characters (a `Split` on the regex `[\\s\\S]`, "any one character"), look
each one up in a `WordLevel` vocabulary, and glue them back together on decoding (`Fuse`).
Like chalklm's own, it refuses characters it has never seen (it has no unknown token).
"""

from __future__ import annotations

import json
from pathlib import Path

from chalklm.errors import TokenizerError
from chalklm.tokenizers import CharTokenizer, Tokenizer

HF_TOKENIZER_FILE = "tokenizer.json"
HF_TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
ANY_ONE_CHARACTER = r"[\s\S]"


def char_to_hf(tokenizer: CharTokenizer) -> dict:
    """The HF `tokenizer.json` contents that encode and decode exactly like `tokenizer`."""
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Split",
            "pattern": {"Regex": ANY_ONE_CHARACTER},
            "behavior": "Isolated",
            "invert": False,
        },
        "post_processor": None,
        "decoder": {"type": "Fuse"},
        "model": {
            "type": "WordLevel",
            "vocab": {ch: i for i, ch in enumerate(tokenizer.chars)},
            "unk_token": "<unk>",  # required by the format; not in the vocabulary
        },
    }


def char_from_hf(data: dict) -> CharTokenizer | None:
    """The `CharTokenizer` an HF tokenizer.json written by `char_to_hf` holds, else None."""
    model = data.get("model") or {}
    pre = data.get("pre_tokenizer") or {}
    if model.get("type") != "WordLevel" or pre.get("pattern") != {"Regex": ANY_ONE_CHARACTER}:
        return None
    vocab = model.get("vocab") or {}
    chars = sorted(vocab)
    if any(len(ch) != 1 for ch in chars) or [vocab[ch] for ch in chars] != list(range(len(chars))):
        return None  # not one id per character in sorted order: not ours
    return CharTokenizer(chars)


def save_hf_tokenizer(tokenizer: Tokenizer, folder: Path, max_length: int) -> None:
    """Write `tokenizer.json` (HF format) and a `tokenizer_config.json` naming the generic
    fast-tokenizer class, so that `AutoTokenizer.from_pretrained(folder)` reads the file
    as it is instead of rebuilding GPT-2's own byte-level pipeline. `max_length` is the
    model's context length, so transformers warns about longer inputs."""
    path = Path(folder) / HF_TOKENIZER_FILE
    if isinstance(tokenizer, CharTokenizer):
        path.write_text(json.dumps(char_to_hf(tokenizer), ensure_ascii=False), encoding="utf-8")
    elif hasattr(tokenizer, "save_hf"):
        tokenizer.save_hf(path)
    else:
        raise TokenizerError(f"no Hugging Face form for a {tokenizer.type_name!r} tokenizer")
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length}
    (Path(folder) / HF_TOKENIZER_CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")


def load_hf_tokenizer(folder: Path) -> Tokenizer | None:
    """The chalklm tokenizer of an HF folder's `tokenizer.json`; None when it has none."""
    path = Path(folder) / HF_TOKENIZER_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise TokenizerError(f"{path}: not a Hugging Face tokenizer.json (no JSON object)")
    chars = char_from_hf(data)
    if chars is not None:
        return chars
    from chalklm.tokenizers import BPETokenizer

    try:
        return BPETokenizer.from_hf(path)
    except TokenizerError as exc:
        raise TokenizerError(
            f"{path}: chalklm cannot read this tokenizer ({exc}); move the file aside to "
            "import the model without it"
        ) from None
