"""`chalklm chat`: talk to a chat model (one whose tokenizer carries a chat template).

Each line read from the terminal (or from a pipe: `printf 'Hi\\nAnd you?\\n' | chalklm chat
...`) is one turn of the user; the answer streams out as it is generated and stays in the
conversation that the next turn continues. End with Ctrl-D (the end of the input).
"""

from __future__ import annotations

import sys

from chalklm.cli.common import non_negative_float, positive_int, seed


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "chat", help="chat with a model whose tokenizer has a chat template",
        description="Chat with a checkpoint whose tokenizer carries a chat template (for "
        "example one imported with chalklm import-hf from SmolLM2-135M-Instruct). Each input "
        "line is your turn; the conversation is rendered by the model's own Jinja2 template, "
        "as transformers' apply_chat_template does, and the answer streams until the model "
        "ends its turn. Ctrl-D ends the chat.")
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder (or a run folder)")
    p.add_argument("--system", default=None, help="a system message that opens the chat")
    p.add_argument("--max-new-tokens", type=positive_int, default=256,
                   help="the longest answer, in tokens (default: %(default)s)")
    p.add_argument("--temperature", type=non_negative_float, default=0.0,
                   help="0 = greedy (the default); higher = more random")
    p.add_argument("--top-p", type=float, default=None,
                   help="pick only among the most likely tokens whose chances add up to p")
    p.add_argument("--seed", type=seed, default=None, help="seed of the random choices")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto",
                   help="auto: a CUDA GPU if PyTorch sees one, else the CPU")
    p.add_argument("--dtype", default="float32",
                   help="float32, bfloat16 or float16 (default: %(default)s)")
    p.set_defaults(func=run)


def run(args) -> int:
    from chalklm.chat import chat_of, converse
    from chalklm.generation import Controls, load

    Controls(args.temperature, None, args.top_p, None, 1.0)
    model, tokenizer = load(args.checkpoint, "torch", args.device, args.dtype)
    if tokenizer is None:
        from chalklm.errors import ConfigError

        raise ConfigError(f"{args.checkpoint}: no tokenizer.json, so no way to chat")
    chat_of(tokenizer, args.checkpoint)
    interactive = sys.stdin.isatty()

    def prompt():
        if interactive:
            sys.stdout.write("> ")
            sys.stdout.flush()

    def write(text: str):
        sys.stdout.write(text)
        sys.stdout.flush()

    if interactive:
        print("chat with the model; Ctrl-D ends it")
    prompt()
    converse(model, tokenizer, sys.stdin, write, args.max_new_tokens, system=args.system,
             prompt=prompt, temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    return 0
