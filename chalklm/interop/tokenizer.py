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
HF_CHAT_TEMPLATE_FILE = "chat_template.jinja"  # where newer transformers save the template
HF_GENERATION_CONFIG_FILE = "generation_config.json"
# The special tokens transformers hands a chat template by name (its special_tokens_map).
NAMED_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                "mask_token")
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
    chat = getattr(tokenizer, "chat", None)
    if chat:  # a chat model's template and named tokens, where transformers looks for them
        config.update(chat["tokens"], chat_template=chat["template"])
    (Path(folder) / HF_TOKENIZER_CONFIG_FILE).write_text(
        json.dumps(config, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _read_optional_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise TokenizerError(f"{path}: expected a JSON object")
    return data


def _token_text(value) -> str | None:
    """A named token as tokenizer_config.json writes it: text, or {"content": text}."""
    return value.get("content") if isinstance(value, dict) else value


def _template(folder: Path, config: dict) -> str | None:
    """The chat template: its own file, or tokenizer_config.json's `chat_template` (a
    string, or a list of named templates of which "default" is the one used)."""
    if (folder / HF_CHAT_TEMPLATE_FILE).is_file():
        return (folder / HF_CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def read_chat(folder: Path, tokenizer: Tokenizer) -> dict | None:
    """How the folder's model chats (the `chat` of a BPETokenizer), or None without a
    template: the template, the named special tokens it may use (bos_token, eos_token...),
    and the tokens that end the model's turn (eos_token, and generation_config.json's
    eos_token_id, one id or several)."""
    config = _read_optional_json(folder / HF_TOKENIZER_CONFIG_FILE)
    template = _template(folder, config)
    if template is None:
        return None
    tokens = {key: _token_text(config[key]) for key in NAMED_TOKENS if _token_text(config.get(key))}
    eos = _read_optional_json(folder / HF_GENERATION_CONFIG_FILE).get("eos_token_id")
    ids = {token_id: text for text, token_id in tokenizer.special.ids.items()}
    stop = [tokens["eos_token"]] if "eos_token" in tokens else []
    for token_id in eos if isinstance(eos, list) else [eos] if eos is not None else []:
        if ids.get(token_id) and ids[token_id] not in stop:
            stop.append(ids[token_id])
    return {"template": template, "tokens": tokens, "stop": stop}


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
        tokenizer = BPETokenizer.from_hf(path)
    except TokenizerError as exc:
        raise TokenizerError(
            f"{path}: chalklm cannot read this tokenizer ({exc}); move the file aside to "
            "import the model without it"
        ) from None
    tokenizer.chat = read_chat(Path(folder), tokenizer)
    return tokenizer
