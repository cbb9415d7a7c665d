"""Opening a checkpoint folder as a model and its tokenizer, ready to generate."""

from __future__ import annotations

from chalklm.errors import ConfigError

DTYPES = ("float32", "bfloat16", "float16")
SHORT_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # train's spelling


def load(path, engine: str = "torch", device: str = "cpu", dtype: str = "float32"):
    """`model, tokenizer` from a checkpoint folder (or a run folder: its best/), ready to
    generate: the glass box's GPT (engine="scratch", NumPy) or the fast engine's
    (engine="torch", on `device` in `dtype`: float32, bfloat16, float16, or fp32, bf16,
    fp16), in eval mode. tokenizer is None when the
    folder has no tokenizer.json (then prompts are ids)."""
    from chalklm import checkpoint
    from chalklm.config import GPTConfig

    if engine not in ("torch", "scratch"):
        raise ConfigError(f"engine must be 'torch' or 'scratch', got {engine!r}")
    dtype = SHORT_DTYPES.get(dtype, dtype)
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)} (or fp32, bf16, fp16), "
                          f"got {dtype!r}")
    folder = checkpoint.resolve(path)
    config = checkpoint.load_config(folder)
    if not isinstance(config, GPTConfig):
        raise ConfigError(f"{folder}: a {config.model_type!r} model; "
                          "generation needs a GPT checkpoint")
    tokenizer = (checkpoint.load_tokenizer(folder)
                 if (folder / checkpoint.TOKENIZER_FILE).is_file() else None)
    if engine == "scratch":
        if dtype != "float32":
            raise ConfigError("the glass box computes in float32; drop the dtype")
        from chalklm.scratch.gpt import GPT as ScratchGPT

        model = ScratchGPT(config)
        model.load_weights(checkpoint.load_weights(folder))
    else:
        import torch

        from chalklm.device import resolve_device
        from chalklm.models import GPT
        from chalklm.models.positional import PositionalEncoding

        device = resolve_device(device)
        with torch.device("meta"):  # shapes only: the weights come from the file, uninitialised
            model = GPT(config)
        weights = checkpoint.read_safetensors_as(folder / checkpoint.MODEL_FILE,
                                                 getattr(torch, dtype))
        model.load_weights(weights, assign=True)  # the file's arrays become the parameters
        if config.positional == "sinusoidal":  # a fixed table, not in the file: make it
            model.position_encoding = PositionalEncoding(config.block_size, config.n_embd)
        model = model.to(device=device, dtype=getattr(torch, dtype))
        for p in model.parameters():
            p.requires_grad_(False)
    model.eval()
    return model, tokenizer
