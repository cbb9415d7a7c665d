"""Checkpoints: a folder of safetensors and JSON files that either engine can read.

    model.safetensors       the weights, named as in docs/contract.md
    config.json             the architecture (`config.to_dict()`, with `model_type`)
    tokenizer.json          the tokenizer file (its `"type"` key says which kind)
    optimizer.safetensors   optimizer moments, for resuming (optional)
    trainer_state.json      step, RNG states, data position, for resuming (optional)

A save writes everything into a temporary folder beside the target and then renames it
into place, so a crash mid-save never leaves a half-written checkpoint: the previous one
stays whole. No pickle: loading a checkpoint reads numbers and text, never runs code.
This module needs no torch (the glass box loads the same weights through NumPy).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chalklm.config import GPTConfig, _Config
from chalklm.errors import ChalkError, CheckpointError
from chalklm.files import folder_beside, refusal, settle

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINER_STATE_FILE = "trainer_state.json"


def _config_classes() -> dict[str, type]:
    """model_type -> config class, for every config defined in chalklm.config."""
    return {cls.model_type: cls for cls in _Config.__subclasses__()} | {"gpt": GPTConfig}


def _to_numpy(arrays: dict) -> dict[str, np.ndarray]:
    """Torch tensors or arrays -> contiguous NumPy arrays (safetensors wants contiguous)."""
    out = {}
    for name, value in arrays.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        out[name] = np.ascontiguousarray(value)
    return out


def save_checkpoint(folder, weights: dict, config, tokenizer=None, optimizer: dict | None = None,
                    trainer_state: dict | None = None) -> Path:
    """Write a checkpoint folder atomically (see `write_folder`); returns its path."""
    folder = Path(folder)
    write_folder(folder, lambda tmp: _write_files(tmp, weights, config, tokenizer, optimizer,
                                                  trainer_state))
    return folder


def write_folder(folder: Path, write) -> None:
    """Call `write(tmp)` on a fresh folder beside `folder`, then rename it into place.

    A write the system refuses (disk full, no permission, a file in the way) is a
    CheckpointError, and `folder` stays as it was."""
    from safetensors import SafetensorError

    try:
        tmp = folder_beside(folder)
        try:
            write(tmp)
            swap_into_place(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(refusal(folder, exc)) from exc


def _write_files(tmp: Path, weights, config, tokenizer, optimizer, trainer_state) -> None:
    from safetensors.numpy import save_file

    save_file(_to_numpy(weights), str(tmp / MODEL_FILE))
    settle(tmp / MODEL_FILE)
    _write_json(tmp / CONFIG_FILE, config.to_dict())
    if tokenizer is not None:
        tokenizer.save(tmp / TOKENIZER_FILE)
    if optimizer is not None:
        save_file(_to_numpy(optimizer), str(tmp / OPTIMIZER_FILE))
        settle(tmp / OPTIMIZER_FILE)
    if trainer_state is not None:
        _write_json(tmp / TRAINER_STATE_FILE, trainer_state)


def _write_json(path: Path, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def swap_into_place(tmp: Path, folder: Path) -> None:
    """Rename `tmp` to `folder`; an existing `folder` is moved aside first, then deleted.

    Between the two renames only the moved-aside copy exists; `resolve` finds it, so even
    a crash at that instant loses nothing."""
    if not folder.exists():
        os.replace(tmp, folder)
        return
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


# What an interrupted write leaves beside its target NAME: a folder being filled
# (`.NAME.partial-XXXX`, files.folder_beside), a folder moved aside (`.NAME.old-PID`,
# swap_into_place), a file being written (`.NAME.XXXX.partial`, files.write_atomic).
_LEFTOVER = re.compile(r"\.(?P<name>.+?)\.(?:partial-\w+|old-\d+|\w+\.partial)")


def leftover_of(name: str, names=None) -> str | None:
    """The target whose cut-off write left an entry called `name`, if it is one (and the
    target is among `names`, when given); else None."""
    match = _LEFTOVER.fullmatch(name)
    if not match or (names is not None and match["name"] not in names):
        return None
    return match["name"]


def tidy_leftovers(folder: Path, names=None) -> None:
    """Clear what writes cut off by a crash or kill -9 left in `folder`: a moved-aside
    folder whose target is gone is moved back (it is the newest whole copy), any other
    leftover is deleted. Only leftovers of `names` (default: any) are touched."""
    if not folder.is_dir():
        return
    for entry in sorted(folder.iterdir()):
        name = leftover_of(entry.name, names)
        if name is None:
            continue
        target = folder / name
        if ".old-" in entry.name and not target.exists():
            os.replace(entry, target)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def resolve(path) -> Path:
    """The checkpoint folder meant by `path`: itself, or a run folder's `best`/`last`."""
    path = Path(path)
    if (path / MODEL_FILE).is_file() or (path / CONFIG_FILE).is_file():
        return path  # a checkpoint folder (if incomplete, reading it says what is missing)
    for sub in ("best", "last"):
        if (path / sub / MODEL_FILE).is_file():
            return path / sub
    leftovers = sorted(path.parent.glob(f".{path.name}.old-*")) if path.name else []
    if not path.exists() and leftovers:
        return leftovers[-1]  # a save was cut off between its two renames
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint folder; train one with `chalklm train`")
    raise CheckpointError(f"{path}: no {MODEL_FILE} here (nor in best/ or last/); "
                          "is this a checkpoint folder?")


def load_weights(path) -> dict[str, np.ndarray]:
    """name -> NumPy array from a checkpoint folder (or a .safetensors file); no torch needed."""
    path = Path(path)
    file = path if path.suffix == ".safetensors" else resolve(path) / MODEL_FILE
    return read_safetensors(file)


def read_safetensors(file: Path, as_torch: bool = False) -> dict:
    """name -> array from a safetensors file: NumPy arrays, or torch tensors (mapped from
    the file lazily, so a model's weights are in memory once, not twice while loading)."""
    if as_torch:
        from safetensors.torch import load_file
    else:
        from safetensors.numpy import load_file

    if not file.is_file():
        raise CheckpointError(f"{file}: missing; the checkpoint is incomplete")
    try:
        return load_file(str(file))
    except Exception as exc:  # safetensors raises several kinds for a damaged file
        raise CheckpointError(f"{file}: corrupt or not a safetensors file ({exc})") from None


# safetensors' names for the dtypes a weight file may hold -> torch's attribute names.
SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16",
                      "BF16": "bfloat16", "I64": "int64", "I32": "int32", "I16": "int16",
                      "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def _safetensors_header(handle, file: Path) -> tuple[dict, int]:
    """(name -> {dtype, shape, data_offsets}, where the data starts) of an open file:
    8 bytes giving the JSON header's length, the header, then the tensors' bytes."""
    size = int.from_bytes(handle.read(8), "little")
    try:
        header = json.loads(handle.read(size))
    except (UnicodeDecodeError, json.JSONDecodeError, MemoryError, OverflowError) as exc:
        raise CheckpointError(f"{file}: corrupt or not a safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{file}: corrupt or not a safetensors file (no header)")
    header.pop("__metadata__", None)
    return header, 8 + size


READ_CHUNK = 1 << 24  # bytes read at a time by read_safetensors_as (16 MiB)


def read_safetensors_as(file: Path, dtype) -> dict:
    """name -> torch tensor in `dtype`, each read straight into its own tensor, 16 MiB at a
    time through one reused buffer and cast on the way: loading an fp32 file in bf16 holds
    the bf16 weights and that buffer, never an fp32 copy of the model (nor of one large
    weight). Plain reads, not a memory map: a map's pages count as the process's memory
    until it is closed, which would be the whole file by the end."""
    import torch

    if not file.is_file():
        raise CheckpointError(f"{file}: missing; the checkpoint is incomplete")
    out, buffer = {}, torch.empty(READ_CHUNK, dtype=torch.uint8)
    with open(file, "rb") as handle:
        header, data_start = _safetensors_header(handle, file)
        for name, info in header.items():
            try:
                begin, end = info["data_offsets"]
                stored = getattr(torch, SAFETENSORS_DTYPES[info["dtype"]])
                tensor = torch.empty([int(n) for n in info["shape"]], dtype=dtype)
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                raise CheckpointError(f"{file}: {name!r} is described wrongly ({exc})") from None
            if end - begin != tensor.numel() * stored.itemsize:
                raise CheckpointError(f"{file}: {name!r} has the wrong number of bytes")
            handle.seek(data_start + begin)
            flat, step = tensor.view(-1), READ_CHUNK // stored.itemsize
            for start in range(0, flat.numel(), step):
                count = min(step, flat.numel() - start)
                raw = buffer[:count * stored.itemsize]
                if handle.readinto(raw.numpy()) != raw.numel():
                    raise CheckpointError(f"{file}: {name!r} is cut short; the file is damaged")
                flat[start:start + count] = raw.view(stored)  # the cast, if any, is here
            out[name] = tensor
    return out


def read_json(file: Path, missing: str = "the checkpoint is incomplete") -> dict:
    """A JSON object from a file; missing, corrupt or not an object is a CheckpointError."""
    if not file.is_file():
        raise CheckpointError(f"{file}: missing; {missing}")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file}: corrupt JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    return data


def load_config(path):
    """The model config stored in a checkpoint folder (GPTConfig, ...)."""
    file = resolve(path) / CONFIG_FILE
    data = read_json(file)
    classes = _config_classes()
    kind = data.get("model_type")
    if kind not in classes:
        raise CheckpointError(f"{file}: unknown model_type {kind!r}; known: {', '.join(classes)}")
    try:
        return classes[kind].from_dict(data)
    except (ChalkError, TypeError) as exc:
        raise CheckpointError(f"{file}: invalid config ({exc})") from None


def load_tokenizer(path):
    from chalklm.tokenizers import load_tokenizer as read

    file = resolve(path) / TOKENIZER_FILE
    if not file.is_file():
        raise CheckpointError(f"{file}: missing; the checkpoint is incomplete")
    try:
        tokenizer = read(file)
    except ChalkError as exc:
        raise CheckpointError(str(exc)) from None
    _check_fits(tokenizer, load_config(file.parent), file)
    return tokenizer


def _check_fits(tokenizer, config, file: Path) -> None:
    """A tokenizer with more ids than the model has embeddings belongs to another model (a
    model's vocabulary may be larger than its tokenizer's: padded, as some GPT-2s are)."""
    sizes = [getattr(config, key) for key in ("vocab_size", "src_vocab_size", "tgt_vocab_size")
             if hasattr(config, key)]
    if sizes and tokenizer.vocab_size > min(sizes):
        raise CheckpointError(f"{file}: the tokenizer has {tokenizer.vocab_size} ids, the model "
                              f"{min(sizes)}; it belongs to another model (put back the "
                              "tokenizer this model was trained with)")


@dataclass
class Checkpoint:
    """A loaded checkpoint: what a model needs to run (weights as NumPy arrays)."""

    path: Path
    config: object
    weights: dict[str, np.ndarray]
    tokenizer: object

    def resume_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """(optimizer arrays, trainer state) for `--resume`; missing files are an error."""
        return (read_safetensors(self.path / OPTIMIZER_FILE),
                read_json(self.path / TRAINER_STATE_FILE))


def load_checkpoint(path) -> Checkpoint:
    """Read and check a whole checkpoint folder; any missing or damaged file is one line."""
    folder = resolve(path)
    config = load_config(folder)
    weights = load_weights(folder)
    return Checkpoint(folder, config, weights, load_tokenizer(folder))
