"""`chalklm export-hf` and `chalklm import-hf`: move GPT models to and from Hugging Face."""

from __future__ import annotations


def _report(what: str, result) -> None:
    c = result.config
    print(f"wrote {result.path}: {what} with {c.n_layer} layers, {c.n_head} heads, "
          f"{c.n_embd} wide, context {c.block_size}, vocabulary {c.vocab_size}")
    for note in result.notes:
        print(f"note: {note}")


def _export(args) -> int:
    from chalklm.interop import export_hf

    _report("a Hugging Face GPT-2", export_hf(args.checkpoint, args.out, force=args.force))
    print(f"load it with transformers.GPT2LMHeadModel.from_pretrained({str(args.out)!r})")
    return 0


def _import(args) -> int:
    from chalklm.interop import import_hf

    _report("a chalklm GPT checkpoint", import_hf(args.folder, args.out, force=args.force))
    return 0


def register(subparsers) -> None:
    export = subparsers.add_parser(
        "export-hf",
        help="write a GPT checkpoint as a Hugging Face GPT-2 folder",
        description="Write a chalklm GPT checkpoint as a folder that "
        "transformers.GPT2LMHeadModel.from_pretrained loads (config.json, model.safetensors, "
        "tokenizer.json). GPT-2 needs learned positions, biases and a tied output layer.",
    )
    export.add_argument("checkpoint", help="chalklm checkpoint folder (or a run folder)")
    export.add_argument("out", help="folder to write")
    export.add_argument("--force", action="store_true", help="replace OUT if it is not empty")
    export.set_defaults(func=_export)

    imp = subparsers.add_parser(
        "import-hf",
        help="turn a Hugging Face GPT-2 folder into a chalklm checkpoint",
        description="Read a GPT-2 folder (config.json and model.safetensors, or a "
        "weights-only pytorch_model.bin; tokenizer.json when present) into a chalklm "
        "checkpoint that both engines load. Never unpickles code.",
    )
    imp.add_argument("folder", help="folder written by save_pretrained (a GPT-2 model)")
    imp.add_argument("out", help="checkpoint folder to write")
    imp.add_argument("--force", action="store_true", help="replace OUT if it is not empty")
    imp.set_defaults(func=_import)
