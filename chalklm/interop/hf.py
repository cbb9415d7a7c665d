"""Folders in and out: a chalklm checkpoint <-> a Hugging Face GPT-2 or Llama folder.

`export_hf` writes what `transformers.AutoModelForCausalLM.from_pretrained(out)` loads:
`config.json`, `model.safetensors` with GPT-2's or Llama's names (a GPT-2 design is
written as GPT-2, a model with the Llama pieces as Llama), and the tokenizer as an HF
`tokenizer.json` (with `tokenizer_config.json`'s chat template, when it has one).
`import_hf` reads such a folder (whoever wrote it: SmolLM2, Llama 3, Qwen2 and their like
too) into a chalklm checkpoint. The renaming itself lives in `chalklm.interop.gpt2` and
`chalklm.interop.llama`; this file only reads and writes. Both refuse to replace a
non-empty folder unless asked (`force=True`), and write into a temporary folder renamed
into place, so a failure leaves nothing half-written. Weights are read from safetensors
only, which cannot run code; a pickled `pytorch_model.bin` needs `allow_pickle=True`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chalklm import checkpoint
from chalklm.config import GPTConfig
from chalklm.errors import CheckpointError, ConfigError
from chalklm.files import settle
from chalklm.interop import llama
from chalklm.interop.gpt2 import config_from_gpt2, config_to_gpt2, from_gpt2_state, to_gpt2_state
from chalklm.interop.tokenizer import (
    HF_GENERATION_CONFIG_FILE,
    load_hf_tokenizer,
    save_hf_tokenizer,
)

HF_CONFIG_FILE = "config.json"
HF_SAFETENSORS_FILE = "model.safetensors"
HF_SAFETENSORS_INDEX = "model.safetensors.index.json"  # a model saved in several shards
HF_TORCH_FILE = "pytorch_model.bin"


_NOT_HF = "is this a folder written by save_pretrained?"


@dataclass
class Result:
    """What an export or import wrote, and anything the user should know about it."""

    path: Path
    config: GPTConfig
    kind: str = ""  # the Hugging Face architecture, e.g. "LlamaForCausalLM"
    notes: list[str] = field(default_factory=list)


def _check_out(out: Path, source: Path, force: bool) -> None:
    """Refuse an output that would destroy something without being asked."""
    if source.resolve().is_relative_to(out.resolve()):
        raise CheckpointError(f"{out}: the output folder holds the input; pick another")
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out}: exists and is a file, not a folder; pick another output")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise CheckpointError(
            f"{out}: exists and is not empty; pass --force (force=True) to replace it"
        )


def _special_ids(tokenizer) -> tuple[int | None, int | None]:
    """(bos, eos) for GPT-2's config: the tokenizer's <|endoftext|> if it has one.

    GPT-2 uses that one token for both. Without it transformers' default (50256) would
    point outside a small vocabulary, so we write None."""
    specials = tokenizer.to_dict().get("special_tokens", {}) if tokenizer is not None else {}
    eot = specials.get("<|endoftext|>")
    return eot, eot


def _chat_ids(tokenizer) -> tuple[int | None, list[int]]:
    """(bos, eos ids) of a chat model's tokenizer: its named bos_token, and the tokens
    that end a turn."""
    chat = getattr(tokenizer, "chat", None) or {}
    specials = tokenizer.special.ids if chat else {}
    bos = specials.get(chat.get("tokens", {}).get("bos_token"))
    return bos, [specials[text] for text in chat.get("stop", []) if text in specials]


def export_hf(source, out, force: bool = False) -> Result:
    """Write the chalklm GPT checkpoint `source` as a Hugging Face folder `out`: GPT-2
    for the GPT-2 design, Llama for a model with the Llama pieces."""
    from safetensors.numpy import save_file

    folder = checkpoint.resolve(source)
    out = Path(out)
    _check_out(out, folder, force)
    config = checkpoint.load_config(folder)
    if not isinstance(config, GPTConfig):
        raise ConfigError(f"{folder}: a {config.model_type!r} model; only GPT exports to "
                          "Hugging Face")
    has_tokenizer = (folder / checkpoint.TOKENIZER_FILE).is_file()
    tokenizer = checkpoint.load_tokenizer(folder) if has_tokenizer else None
    generation = None
    if config.is_gpt2:
        weights = to_gpt2_state(checkpoint.load_weights(folder), config)  # checks expressible
        bos, eos = _special_ids(tokenizer)
        hf_config = config_to_gpt2(config, bos_token_id=bos, eos_token_id=eos)
    else:
        weights = llama.to_llama_state(checkpoint.load_weights(folder), config)
        bos, stop = _chat_ids(tokenizer)
        eos = stop[0] if len(stop) == 1 else stop or None
        hf_config = llama.config_to_llama(config, bos_token_id=bos, eos_token_id=eos)
        generation = {"bos_token_id": bos, "eos_token_id": eos}
    result = Result(out, config, kind=hf_config["architectures"][0])

    def write(tmp: Path) -> None:
        tensors = {name: np.ascontiguousarray(a) for name, a in weights.items()}
        # transformers reads safetensors files tagged as torch's ("pt").
        save_file(tensors, str(tmp / HF_SAFETENSORS_FILE), metadata={"format": "pt"})
        settle(tmp / HF_SAFETENSORS_FILE)
        (tmp / HF_CONFIG_FILE).write_text(json.dumps(hf_config, indent=1) + "\n")
        if generation is not None:
            (tmp / HF_GENERATION_CONFIG_FILE).write_text(json.dumps(generation, indent=1) + "\n")
        if tokenizer is None:
            result.notes.append("the checkpoint has no tokenizer, so no tokenizer.json written")
        else:
            save_hf_tokenizer(tokenizer, tmp, config.block_size)

    checkpoint.write_folder(out, write)
    return result


def _unpickling_reason(exc: Exception) -> str:
    """The reason inside PyTorch's long refusal (whose advice, weights_only=False, would
    run the file's code): the line after "WeightsUnpickler error:", else the first line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    _, found, after = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (after if found else text).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _load_torch_weights(path: Path, allow_pickle: bool) -> dict:
    """A `pytorch_model.bin`, only when allowed, and then unpickled with
    `weights_only=True`: tensors only, never code."""
    import pickle
    import warnings

    import torch

    if not allow_pickle:
        raise CheckpointError(f"{path}: a pickled PyTorch file, refused because unpickling "
                              "can run code; pass --allow-pickle (allow_pickle=True) to read "
                              "its tensors with torch.load(weights_only=True)")
    try:
        with warnings.catch_warnings():  # PyTorch's warnings about the pickle: ours is one line
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"{path}: not a weights-only PyTorch file, refused so that no "
                              f"code runs ({_unpickling_reason(exc)})") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dict of name -> tensor")
    return state


def _open_safetensors(path: Path):
    """A safetensors file opened for reading one tensor at a time (as torch tensors)."""
    from safetensors import safe_open

    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the folder is incomplete")
    try:
        return safe_open(str(path), framework="pt")
    except Exception as exc:  # safetensors raises several kinds for a damaged file
        raise CheckpointError(f"{path}: corrupt or not a safetensors file ({exc})") from None


def open_hf_weights(folder: Path, allow_pickle: bool = False):
    """(names, get) for the weights of an HF folder: `get(name)` reads one tensor (torch,
    in the file's dtype), so a caller can convert the weights one at a time. Safetensors
    (one file, or shards listed by model.safetensors.index.json); a pickled
    pytorch_model.bin only with `allow_pickle`."""
    folder = Path(folder)
    if (folder / HF_SAFETENSORS_FILE).is_file():
        files = {HF_SAFETENSORS_FILE: _open_safetensors(folder / HF_SAFETENSORS_FILE)}
        where = {name: HF_SAFETENSORS_FILE for name in files[HF_SAFETENSORS_FILE].keys()}
    elif (folder / HF_SAFETENSORS_INDEX).is_file():
        index = checkpoint.read_json(folder / HF_SAFETENSORS_INDEX, _NOT_HF)
        where = index.get("weight_map", {})
        shards = sorted(set(where.values()))
        files = {shard: _open_safetensors(folder / shard) for shard in shards}
    elif (folder / HF_TORCH_FILE).is_file():
        state = _load_torch_weights(folder / HF_TORCH_FILE, allow_pickle)
        return set(state), state.__getitem__
    else:
        raise CheckpointError(
            f"{folder}: no {HF_SAFETENSORS_FILE} or {HF_TORCH_FILE}; {_NOT_HF}"
        )

    def get(name: str):
        try:
            return files[where[name]].get_tensor(name)
        except Exception as exc:  # a name the index lists but its shard lacks, a bad file
            raise CheckpointError(f"{folder / where[name]}: cannot read {name!r} ({exc})") from None

    return set(where), get


def read_hf_weights(folder: Path, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """name -> float32 array of every weight in an HF folder (see `open_hf_weights`).
    Read through torch, which knows every dtype (bf16)."""
    names, get = open_hf_weights(folder, allow_pickle)
    return {name: get(name).detach().float().numpy() for name in sorted(names)}


def _import_llama(folder: Path, hf_config: dict, allow_pickle: bool):
    """(config, weights) of a Llama-family folder, converted one tensor at a time."""
    config = llama.config_from_llama(hf_config)
    names, get = open_hf_weights(folder, allow_pickle)
    weights = llama.from_llama_state(lambda name: get(name).float().numpy(), names, config,
                                     qkv_biases_only=hf_config["model_type"] == "qwen2")
    return config, weights


def import_hf(source, out, force: bool = False, allow_pickle: bool = False) -> Result:
    """Read the Hugging Face folder `source` (GPT-2, Llama or Qwen2) into the chalklm
    checkpoint `out`. `allow_pickle` lets a pytorch_model.bin be read (weights only)."""
    folder = Path(source)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such folder")
    out = Path(out)
    _check_out(out, folder, force)
    hf_config = checkpoint.read_json(folder / HF_CONFIG_FILE, _NOT_HF)
    if hf_config.get("model_type", "gpt2") == "gpt2":
        config = config_from_gpt2(hf_config)
        weights = from_gpt2_state(read_hf_weights(folder, allow_pickle), config)
        kind = "GPT2LMHeadModel"
    else:
        config, weights = _import_llama(folder, hf_config, allow_pickle)
        kind = llama.ARCHITECTURES[hf_config["model_type"]]
    tokenizer = load_hf_tokenizer(folder)
    result = Result(out, config, kind=kind)
    if tokenizer is None:
        result.notes.append(
            f"{folder} has no tokenizer.json: the checkpoint holds weights and config only "
            "(put a chalklm tokenizer.json beside them to turn text into ids)"
        )
    elif tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(
            f"{folder}: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
            f"{config.vocab_size}; they do not belong together"
        )
    elif getattr(tokenizer, "chat", None):
        result.notes.append("the tokenizer carries a chat template: try chalklm chat "
                            f"--checkpoint {out}")
    checkpoint.save_checkpoint(out, weights, config, tokenizer=tokenizer)
    return result
