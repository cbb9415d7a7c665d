"""`chalklm demo ...`: the article's first programs, run on the glass box, numbers printed."""

from __future__ import annotations

import os
import sys

from chalklm.cli.common import (
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from chalklm.demos import defaults


def one_blas_thread() -> None:
    """Ask NumPy's matrix library for one thread, unless the user chose a number.

    The demos multiply small matrices, where a second thread gains little; on a busy
    machine, BLAS threads that wait for a core by spinning made the chars demo 20 times
    slower (measured: 5 against 100 steps a second). Only works before NumPy is imported.
    """
    if "numpy" not in sys.modules:
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, "1")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="the article's first network and first language model, every number shown",
        description="Small programs from the article, trained on the glass box (NumPy).",
    )
    demos = parser.add_subparsers(title="demos", metavar="DEMO", required=True)
    _register_leaf_flower(demos)
    _register_chars(demos)


def _register_leaf_flower(demos) -> None:
    p = demos.add_parser(
        "leaf-flower", help="a simple neural network: leaf or flower from colour and volume",
        description="Train the article's first network by gradient descent and print its "
                    "weights, one forward pass in numbers, the loss and the accuracy.",
    )
    p.add_argument("--steps", type=positive_int, default=defaults.LEAF_FLOWER_STEPS,
                   help=f"gradient descent steps (default {defaults.LEAF_FLOWER_STEPS})")
    p.add_argument("--lr", type=positive_float, default=defaults.LEAF_FLOWER_LR,
                   help=f"learning rate (default {defaults.LEAF_FLOWER_LR})")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed for data and weights")
    p.set_defaults(func=_run_leaf_flower)


def _register_chars(demos) -> None:
    p = demos.add_parser(
        "chars", help="the first language model: next-character prediction, then sampling",
        description="Train a next-character model on Tiny Shakespeare in the glass box, "
                    "then generate text one character at a time.",
    )
    p.add_argument("--steps", type=positive_int, default=defaults.CHARS_STEPS,
                   help=f"training steps (default {defaults.CHARS_STEPS})")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed for weights, batches, sample")
    p.add_argument("--length", type=positive_int, default=defaults.CHARS_LENGTH,
                   help=f"characters to generate (default {defaults.CHARS_LENGTH})")
    p.add_argument("--temperature", type=non_negative_float, default=1.0,
                   help="below 1: safer choices; above 1: wilder; 0: always the likeliest")
    p.add_argument("--prompt", default="", help="text to start from (default: a new line)")
    p.set_defaults(func=_run_chars)


def _run_leaf_flower(args) -> int:
    one_blas_thread()
    from chalklm.demos.leaf_flower import run

    run(steps=args.steps, lr=args.lr, seed=args.seed)
    return 0


def _run_chars(args) -> int:
    one_blas_thread()
    from chalklm.demos.chars import run

    run(steps=args.steps, seed=args.seed, length=args.length, temperature=args.temperature,
        prompt=args.prompt)
    return 0
