"""`chalklm translate` and `chalklm evaluate`: use and score a translation checkpoint.

    chalklm translate --checkpoint runs/multi30k_de_en "Ein Mann fährt Fahrrad."
    chalklm translate --checkpoint DIR --file sentences.de      (or: ... < sentences.de)
    chalklm translate --checkpoint DIR "Ein Hund rennt." --show-attention
    chalklm translate --checkpoint DIR "Ein Hund rennt." --attention-png attention.png
    chalklm evaluate --checkpoint DIR --src test_2016_flickr.de --ref test_2016_flickr.en
"""

from __future__ import annotations

import sys
from pathlib import Path

from chalklm.cli.common import non_negative_float, positive_int, read_stdin, utf8_text
from chalklm.errors import ConfigError, DataError
from chalklm.files import check_writable, write_atomic


def _decoding_options(p) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint folder, or a run folder (its best/ is used)")
    p.add_argument("--beam-size", type=positive_int, default=4,
                   help="partial translations kept by beam search (default: %(default)s)")
    p.add_argument("--greedy", action="store_true", help="greedy decoding (same as beam 1)")
    p.add_argument("--alpha", type=non_negative_float, default=0.6,
                   help="length penalty ((5 + length) / 6)^alpha (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="sentences decoded together (default: %(default)s)")
    p.add_argument("--engine", choices=["torch", "scratch"], default="torch",
                   help="torch (fast) or scratch (the glass box, slow)")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto",
                   help="auto: a CUDA GPU if PyTorch sees one, else the CPU")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "translate", help="translate sentences with a trained Transformer checkpoint",
        description="Translate sentences given as arguments, from --file, or from stdin "
        "(one sentence a line); translations are printed one a line.")
    p.add_argument("sentences", nargs="*", help="sentences to translate")
    p.add_argument("--file", help="a UTF-8 text file, one sentence a line")
    p.add_argument("--show-attention", action="store_true",
                   help="print the cross-attention of the (one) sentence as a grid")
    p.add_argument("--attention-png", metavar="FILE",
                   help="save the cross-attention of the (one) sentence as a PNG picture")
    p.add_argument("--layer", type=int, default=-1,
                   help="the decoder layer whose attention --show-attention shows "
                        "(default: the last)")
    _decoding_options(p)
    p.set_defaults(func=run_translate)

    e = subparsers.add_parser(
        "evaluate", help="score a translation checkpoint with sacreBLEU (BLEU and chrF)",
        description="Translate --src and score the translations against --ref with "
        "sacreBLEU (13a tokenization, detokenized text) and chrF. --src/--ref are files, "
        "or Multi30k file names such as test_2016_flickr.de.")
    e.add_argument("--src", required=True, help="source sentences, one a line")
    e.add_argument("--ref", required=True, help="reference translations, aligned with --src")
    e.add_argument("--out", help="also write the translations to this file")
    e.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    e.add_argument("--limit", type=positive_int, help="score only the first N sentences")
    _decoding_options(e)
    e.set_defaults(func=run_evaluate)


def _translator(args):
    from chalklm.translation.translator import Translator

    device = args.device
    if args.engine == "torch":
        from chalklm.device import resolve_device

        device = resolve_device(device)
    return Translator.from_checkpoint(args.checkpoint, args.engine, device)


def _beam(args) -> int:
    return 1 if args.greedy else args.beam_size


def _input_sentences(args) -> list[str]:
    from chalklm.data.parallel import read_lines

    if args.sentences and args.file:
        raise ConfigError("give sentences as arguments or --file, not both")
    if args.sentences:
        return [utf8_text(s, f"sentence {i + 1}") for i, s in enumerate(args.sentences)]
    if args.file:
        return read_lines(args.file)
    if sys.stdin.isatty():
        raise ConfigError("nothing to translate: give a sentence, --file FILE, or pipe "
                          "sentences in (one a line)")
    return read_stdin().splitlines()


def run_translate(args) -> int:
    sentences = _input_sentences(args)
    attention = args.show_attention or args.attention_png
    if attention and len(sentences) != 1:
        option = "--show-attention" if args.show_attention else "--attention-png"
        raise ConfigError(f"{option} shows one sentence; {len(sentences)} were given")
    if args.attention_png:
        check_writable(args.attention_png)
    translator = _translator(args)
    if attention:
        from chalklm.translation.attention import (
            cross_attention,
            format_attention,
            save_attention_png,
        )

        amap = cross_attention(translator, sentences[0], _beam(args), args.layer)
        print(amap.translation)
        if args.show_attention:
            print(format_attention(amap))
        if args.attention_png:
            save_attention_png(amap, args.attention_png)
            print(f"cross-attention saved to {args.attention_png}", file=sys.stderr)
        return 0
    translations = translator.translate(sentences, _beam(args), args.alpha, args.batch_size,
                                        progress=len(sentences) > 1)
    for line in translations:
        print(line)
    return 0


def _sentence_file(name: str, role: str) -> list[str]:
    """Lines of a file, or of a Multi30k file named like test_2016_flickr.de."""
    from chalklm.data.parallel import read_lines
    from chalklm.data.registry import DATASETS, dataset_file

    path = Path(name)
    if not path.exists() and name in DATASETS["multi30k"].files:
        path = dataset_file("multi30k", name)
    if not path.exists():
        raise DataError(f"{role} {name}: no such file (nor a Multi30k file: "
                        f"{', '.join(DATASETS['multi30k'].files)})")
    return read_lines(path)


def run_evaluate(args) -> int:
    from chalklm.translation.evaluation import score

    sources = _sentence_file(args.src, "--src")
    references = _sentence_file(args.ref, "--ref")
    if len(sources) != len(references):
        raise DataError(f"--src has {len(sources)} lines but --ref has {len(references)}; "
                        "they must be aligned line by line")
    if args.limit:
        sources, references = sources[: args.limit], references[: args.limit]
    if args.out and Path(args.out).exists() and not args.force:
        raise ConfigError(f"{args.out} exists; pass --force to overwrite it")
    if args.out:  # now, not after translating every sentence
        check_writable(args.out)
    translator = _translator(args)
    hypotheses = translator.translate(sources, _beam(args), args.alpha, args.batch_size,
                                      progress=True)
    if args.out:
        write_atomic(args.out, "\n".join(hypotheses) + "\n")
    decoding = "greedy" if _beam(args) == 1 else f"beam {_beam(args)}, alpha {args.alpha}"
    print(f"{args.checkpoint}: {len(sources)} sentences, {decoding}")
    print(score(hypotheses, references).report())
    return 0
