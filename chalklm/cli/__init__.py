"""The `chalklm` command: one subcommand per module in this package.

Each module defines `register(subparsers)`, which adds its parser and sets `func`, the
function that runs it. Modules import heavy libraries (torch) inside `func`, so that
`chalklm --help` answers at once. A `ChalkError` becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from chalklm.errors import ChalkError, UnknownCharacterError

# The subcommand modules, in the order `chalklm --help` lists them.
COMMAND_MODULES: list[str] = ["demo", "interop", "train", "sample", "chat", "tokenizer",
                              "translate", "explain"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit 2), not the whole usage text."""

    def error(self, message):
        hint = _set_hint(message) or f" (see {self.prog} --help)"
        self.exit(2, f"{self.prog}: error: {message}{hint}\n")


def _set_hint(message: str) -> str:
    """nanoGPT's style, `--n_layer=4`: a config key typed as an option. chalklm sets config
    keys with `--set`: say so, with the user's own key and value."""
    if not message.startswith("unrecognized arguments:"):
        return ""
    from chalklm.training.config import MODEL_KEYS, TRAIN_KEYS

    words = message.partition(":")[2].split()
    for i, word in enumerate(words):
        key, _, value = word.lstrip("-").partition("=")
        key = key.replace("-", "_")
        if word.startswith("--") and key in MODEL_KEYS + TRAIN_KEYS:
            following = words[i + 1] if i + 1 < len(words) else "-"
            value = value or (following if not following.startswith("-") else "VALUE")
            return f"; config keys are set with --set: --set {key}={value}"
    return ""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="chalklm",
        description="Build, train and open up language models with nothing hidden.",
    )
    from chalklm import __version__

    parser.add_argument("--version", action="version", version=f"chalklm {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"chalklm.cli.{name}").register(subparsers)
    return parser


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    """The subcommand names, as `chalklm --help` lists them."""
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(subparsers.choices)


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):  # bare `chalklm`: a usage mistake like any other
        parser.error("name a command: " + ", ".join(_commands(parser)))
    try:
        status = args.func(args)
    except UnknownCharacterError as exc:  # its hint names a Python argument: say it in ours
        print(f"chalklm: error: {exc.problem}; the tokenizer has no id for it: leave it out, "
              "or use a tokenizer that has it (a BPE tokenizer reads any text)", file=sys.stderr)
        sys.exit(2)
    except ChalkError as exc:
        print(f"chalklm: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("chalklm: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # the reader went away (`chalklm sample ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        sys.exit(141)  # 128 + SIGPIPE, as a shell reports a command the pipe closed on
    sys.exit(status or 0)
