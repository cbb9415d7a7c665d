"""`chalklm export-hf` and `chalklm import-hf`: move GPT models to and from Hugging Face
(GPT-2, and Llama-family models such as SmolLM2, Llama 3 and Qwen2)."""

from __future__ import annotations


def _report(what: str, result) -> None:
    c = result.config
    print(f"wrote {result.path}: {what} with {c.n_layer} layers, {c.n_head} heads, "
          f"{c.n_embd} wide, context {c.block_size}, vocabulary {c.vocab_size}")
    for note in result.notes:
        print(f"note: {note}")


def _export(args) -> int:
    from chalklm.interop import export_hf

    result = export_hf(args.checkpoint, args.out, force=args.force)
    _report(f"a Hugging Face {result.kind}", result)
    print(f"load it with transformers.{result.kind}.from_pretrained({str(args.out)!r})")
    return 0


def _import(args) -> int:
    from chalklm.interop import import_hf

    result = import_hf(args.folder, args.out, force=args.force, allow_pickle=args.allow_pickle)
    _report(f"a chalklm GPT checkpoint (from {result.kind})", result)
    return 0


def register(subparsers) -> None:
    export = subparsers.add_parser(
        "export-hf",
        help="write a GPT checkpoint as a Hugging Face GPT-2 or Llama folder",
        description="Write a chalklm GPT checkpoint as a folder that "
        "transformers.AutoModelForCausalLM.from_pretrained loads (config.json, "
        "model.safetensors, tokenizer.json, and for Llama generation_config.json and the chat "
        "template). The GPT-2 design (learned positions, biases, a tied output layer) becomes "
        "GPT2LMHeadModel; a model with the Llama pieces (rmsnorm, rope, swiglu) "
        "LlamaForCausalLM.",
    )
    export.add_argument("checkpoint", help="chalklm checkpoint folder (or a run folder)")
    export.add_argument("out", help="folder to write")
    export.add_argument("--force", action="store_true", help="replace OUT if it is not empty")
    export.set_defaults(func=_export)

    imp = subparsers.add_parser(
        "import-hf",
        help="turn a Hugging Face GPT-2, Llama, Mistral or Qwen2 folder into a checkpoint",
        description="Read a GPT2LMHeadModel, LlamaForCausalLM (SmolLM2, Llama 3...), "
        "MistralForCausalLM or Qwen2ForCausalLM folder (config.json and model.safetensors or "
        "its shards; tokenizer.json, tokenizer_config.json and generation_config.json when "
        "present) into "
        "a chalklm checkpoint that both engines load. Never runs code from the folder.",
    )
    imp.add_argument("folder", help="folder written by save_pretrained (or downloaded)")
    imp.add_argument("out", help="checkpoint folder to write")
    imp.add_argument("--force", action="store_true", help="replace OUT if it is not empty")
    imp.add_argument("--allow-pickle", action="store_true",
                     help="read a pickled pytorch_model.bin (tensors only, weights_only=True)")
    imp.set_defaults(func=_import)
