"""`chalklm tokenizer train|encode|decode|show`: build a tokenizer and watch it cut text."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from chalklm.cli.common import positive_int, read_stdin, utf8_text

# what --type bpe uses when an option is not given (a char tokenizer takes none of them)
BPE_DEFAULTS = {"vocab_size": 4096, "pattern": "gpt4", "min_frequency": 2, "special": []}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tokenizer",
        help="train a BPE (or character) tokenizer; encode, decode and show text as tokens",
        description="Sub-word tokens: train a byte-level BPE tokenizer on a dataset, then "
        "encode text to ids, decode ids to text, or show how a text is cut into tokens.",
    )
    sub = p.add_subparsers(title="actions", metavar="ACTION", required=True)

    t = sub.add_parser("train", help="learn a tokenizer from a dataset and save it as JSON")
    t.add_argument("--data", action="append", metavar="NAME_OR_FILE",
                   help="dataset name (shakespeare, multi30k, python-docs) or a UTF-8 text "
                   "file; repeatable (default: shakespeare)")
    t.add_argument("--type", choices=["bpe", "char"], default="bpe",
                   help="byte-level BPE or one id per character (default: %(default)s)")
    t.add_argument("--vocab-size", type=positive_int,
                   help="BPE: ids in the vocabulary, bytes and special tokens included "
                   f"(default: {BPE_DEFAULTS['vocab_size']}); a char tokenizer has one id per "
                   "character of the text")
    t.add_argument("--pattern",
                   help="split pattern before merging: gpt2, gpt4 or a regex (default: gpt4)")
    t.add_argument("--special", action="append", metavar="TOKEN",
                   help="a special token such as '<|endoftext|>' (repeatable)")
    t.add_argument("--min-frequency", type=positive_int,
                   help="stop when no pair occurs this often "
                   f"(default: {BPE_DEFAULTS['min_frequency']})")
    t.add_argument("--out", required=True, help="where to write the tokenizer JSON file")
    t.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    t.set_defaults(func=run_train)

    for name, helptext in (("encode", "print the ids of a text"),
                           ("show", "print a text cut into its tokens, each over its id")):
        e = sub.add_parser(name, help=helptext)
        e.add_argument("--tokenizer", required=True, help="a tokenizer JSON file")
        e.add_argument("text", nargs="?", help="the text (default: read standard input)")
        e.add_argument("--file", help="read the text from this file instead")
        e.add_argument("--allow-special", action="store_true",
                       help="encode special tokens found in the text as their ids")
        e.set_defaults(func=run_encode if name == "encode" else run_show)

    d = sub.add_parser("decode", help="print the text of ids")
    d.add_argument("--tokenizer", required=True, help="a tokenizer JSON file")
    d.add_argument("ids", nargs="*", help="ids (default: read them from standard input)")
    d.set_defaults(func=run_decode)


def _training_texts(names: list[str]) -> list[str]:
    from chalklm.data import DATASETS, dataset_file, load_text, read_text_file

    texts = []
    for name in names:
        files = DATASETS[name].files if name in DATASETS else {}
        if files and "text" not in files:  # a parallel corpus: all its training files
            texts += [read_text_file(dataset_file(name, r)) for r in files if r.startswith("train")]
        else:
            texts.append(load_text(name))
    return texts


def _bpe_options(args) -> dict:
    """The BPE options, defaults filled in; given with --type char, they are an error
    (a char tokenizer's size is the text's number of distinct characters)."""
    from chalklm.errors import ConfigError

    given = {k: getattr(args, k) for k in BPE_DEFAULTS if getattr(args, k) is not None}
    if args.type == "char" and given:
        names = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ConfigError(f"{names}: BPE options, but --type char makes one id per distinct "
                          "character of the text; leave them out or use --type bpe")
    return BPE_DEFAULTS | given


def run_train(args) -> int:
    from chalklm.errors import ChalkError
    from chalklm.files import check_writable
    from chalklm.tokenizers import BPETokenizer, CharTokenizer

    options = _bpe_options(args)
    out = Path(args.out)
    if out.exists() and not args.force and not out.is_dir():
        raise ChalkError(f"{out} exists; pass --force to overwrite it or choose another --out")
    check_writable(out)  # now, not after minutes of training
    names = args.data or ["shakespeare"]
    texts = _training_texts(names)
    start = time.perf_counter()
    if args.type == "char":
        tok = CharTokenizer("".join(texts))
    else:
        tok = BPETokenizer.train(
            texts, options["vocab_size"], pattern=options["pattern"],
            special_tokens=options["special"], min_frequency=options["min_frequency"],
            progress=not args.no_progress,
        )
    seconds = time.perf_counter() - start
    tok.save(out)
    chars = sum(map(len, texts))
    tokens = sum(len(tok.encode_ordinary(t) if args.type == "bpe" else tok.encode(t))
                 for t in texts)
    print(f"{tok!r} trained on {', '.join(names)} ({chars:,} characters) in {seconds:.1f}s")
    print(f"{chars / max(tokens, 1):.2f} characters per token on the training text; saved {out}")
    return 0


def _read_text(args) -> str:
    from chalklm.data import read_text_file

    if args.file:
        return read_text_file(args.file)
    if args.text is not None and args.text != "-":
        return utf8_text(args.text, "the text argument")
    return read_stdin()


def _encode(args):
    from chalklm.tokenizers import load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    text = _read_text(args)
    if hasattr(tok, "special"):
        return tok, tok.encode(text, allowed_special="all" if args.allow_special else "none_raise")
    return tok, tok.encode(text)


def run_encode(args) -> int:
    _, ids = _encode(args)
    print(" ".join(map(str, ids)))
    return 0


def run_show(args) -> int:
    import shutil

    from chalklm.tokenizers.show import render_tokens

    tok, ids = _encode(args)
    print(render_tokens(tok, ids, width=shutil.get_terminal_size().columns))
    chars = len(tok.decode(ids))
    print(f"{chars} characters -> {len(ids)} tokens ({chars / max(len(ids), 1):.2f} per token)")
    return 0


def run_decode(args) -> int:
    from chalklm.errors import TokenizerError
    from chalklm.tokenizers import load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    words = args.ids or read_stdin().replace(",", " ").split()
    try:
        ids = [int(w) for w in words]
    except ValueError as exc:
        raise TokenizerError(f"ids must be whole numbers ({exc})") from None
    sys.stdout.write(tok.decode(ids) + "\n")
    return 0
