"""Folders in and out: a chalklm checkpoint <-> a Hugging Face GPT-2 folder.

`export_hf` writes what `transformers.GPT2LMHeadModel.from_pretrained(out)` loads:
`config.json`, `model.safetensors` with GPT-2's names, and the tokenizer as an HF
`tokenizer.json`. `import_hf` reads such a folder (whoever wrote it) into a chalklm
checkpoint. The renaming itself lives in `chalklm.interop.gpt2`; this file only reads and
writes. Both refuse to replace a non-empty folder unless asked (`force=True`), and write
into a temporary folder renamed into place, so a failure leaves nothing half-written.
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
from chalklm.interop.gpt2 import config_from_gpt2, config_to_gpt2, from_gpt2_state, to_gpt2_state
from chalklm.interop.tokenizer import load_hf_tokenizer, save_hf_tokenizer

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


def export_hf(source, out, force: bool = False) -> Result:
    """Write the chalklm GPT checkpoint `source` as a Hugging Face GPT-2 folder `out`."""
    from safetensors.numpy import save_file

    folder = checkpoint.resolve(source)
    out = Path(out)
    _check_out(out, folder, force)
    config = checkpoint.load_config(folder)
    if not isinstance(config, GPTConfig):
        raise ConfigError(f"{folder}: a {config.model_type!r} model; only GPT exports to GPT-2")
    weights = to_gpt2_state(checkpoint.load_weights(folder), config)  # checks expressible
    has_tokenizer = (folder / checkpoint.TOKENIZER_FILE).is_file()
    tokenizer = checkpoint.load_tokenizer(folder) if has_tokenizer else None
    bos, eos = _special_ids(tokenizer)
    result = Result(out, config)

    def write(tmp: Path) -> None:
        tensors = {name: np.ascontiguousarray(a) for name, a in weights.items()}
        # transformers reads safetensors files tagged as torch's ("pt").
        save_file(tensors, str(tmp / HF_SAFETENSORS_FILE), metadata={"format": "pt"})
        settle(tmp / HF_SAFETENSORS_FILE)
        hf_config = config_to_gpt2(config, bos_token_id=bos, eos_token_id=eos)
        (tmp / HF_CONFIG_FILE).write_text(json.dumps(hf_config, indent=1) + "\n")
        if tokenizer is None:
            result.notes.append("the checkpoint has no tokenizer, so no tokenizer.json written")
        else:
            save_hf_tokenizer(tokenizer, tmp, config.block_size)

    checkpoint.write_folder(out, write)
    return result


def _load_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the folder is incomplete")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises several kinds for a damaged file
        raise CheckpointError(f"{path}: corrupt or not a safetensors file ({exc})") from None


def _unpickling_reason(exc: Exception) -> str:
    """The reason inside PyTorch's long refusal (whose advice, weights_only=False, would
    run the file's code): the line after "WeightsUnpickler error:", else the first line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    _, found, after = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (after if found else text).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _load_torch_weights(path: Path) -> dict:
    """A `pytorch_model.bin`, unpickled with `weights_only=True`: tensors only, never code."""
    import pickle
    import warnings

    import torch

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


def read_hf_weights(folder: Path) -> dict[str, np.ndarray]:
    """name -> float32 array from a GPT-2 folder: safetensors (one file or shards) or a
    weights-only pytorch_model.bin. Read through torch, which knows every dtype (bf16)."""
    folder = Path(folder)
    if (folder / HF_SAFETENSORS_FILE).is_file():
        tensors = _load_safetensors(folder / HF_SAFETENSORS_FILE)
    elif (folder / HF_SAFETENSORS_INDEX).is_file():
        index = checkpoint.read_json(folder / HF_SAFETENSORS_INDEX, _NOT_HF)
        weight_map = index.get("weight_map", {})
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            tensors.update(_load_safetensors(folder / shard))
    elif (folder / HF_TORCH_FILE).is_file():
        tensors = _load_torch_weights(folder / HF_TORCH_FILE)
    else:
        raise CheckpointError(
            f"{folder}: no {HF_SAFETENSORS_FILE} or {HF_TORCH_FILE}; "
            "is this a GPT-2 folder written by save_pretrained?"
        )
    return {name: t.detach().float().numpy() for name, t in tensors.items()}


def import_hf(source, out, force: bool = False) -> Result:
    """Read the Hugging Face GPT-2 folder `source` into the chalklm checkpoint `out`."""
    folder = Path(source)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such folder")
    out = Path(out)
    _check_out(out, folder, force)
    config = config_from_gpt2(checkpoint.read_json(folder / HF_CONFIG_FILE, _NOT_HF))
    weights = from_gpt2_state(read_hf_weights(folder), config)
    tokenizer = load_hf_tokenizer(folder)
    result = Result(out, config)
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
    checkpoint.save_checkpoint(out, weights, config, tokenizer=tokenizer)
    return result
