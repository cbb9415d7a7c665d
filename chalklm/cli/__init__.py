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

from chalklm.errors import ChalkError

# The subcommand modules, in the order `chalklm --help` lists them.
COMMAND_MODULES: list[str] = ["demo", "interop", "train", "sample", "tokenizer", "translate"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit 2), not the whole usage text."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        sys.exit(2)
    try:
        status = args.func(args)
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
