"""`chalklm sample`: generate text from a checkpoint, with either engine."""

from __future__ import annotations

import argparse

from chalklm.cli.common import positive_int


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser("sample", help="generate text from a trained checkpoint")
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint folder, or a run folder (its best/ is used)")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--max-new-tokens", type=positive_int, default=300)
    p.add_argument("--temperature", type=_non_negative_float, default=0.8,
                   help="0 = greedy; higher = more random (default: %(default)s)")
    p.add_argument("--top-k", type=positive_int, default=None,
                   help="pick only among the k most likely tokens")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--engine", choices=["torch", "scratch"], default="torch")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto")
    p.set_defaults(func=run)


def next_logits_for(checkpoint, engine: str, device: str):
    """The `next_logits` function of the checkpoint's model in the chosen engine."""
    if engine == "scratch":
        from chalklm.scratch.models import GPT as ScratchGPT
        from chalklm.training.scratch_engine import scratch_next_logits

        model = ScratchGPT(checkpoint.config)
        model.load_state_dict(checkpoint.weights)
        return scratch_next_logits(model)
    from chalklm.generation import torch_next_logits
    from chalklm.models import GPT
    from chalklm.training.engines import resolve_device

    device = resolve_device(device)
    model = GPT(checkpoint.config)
    model.load_weights(checkpoint.weights)
    return torch_next_logits(model.to(device).eval(), device)


def run(args) -> int:
    from chalklm.checkpoint import load_checkpoint
    from chalklm.generation import generate

    checkpoint = load_checkpoint(args.checkpoint)
    prompt_ids = checkpoint.tokenizer.encode(args.prompt)  # an unknown character: one line
    ids = generate(next_logits_for(checkpoint, args.engine, args.device), prompt_ids,
                   args.max_new_tokens, checkpoint.config.block_size, args.temperature,
                   args.top_k, args.seed)
    print(checkpoint.tokenizer.decode(ids))
    return 0
