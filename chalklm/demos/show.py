"""Small text helpers the demos share, so every number is printed the same way."""

from __future__ import annotations

from collections.abc import Sequence

from chalklm.errors import ConfigError


def signed(value: float, digits: int = 3) -> str:
    """A number with its sign always shown (+0.250, -1.300): weights read better that way."""
    return f"{value:+.{digits}f}"


def table(row_names: Sequence[str], column_names: Sequence[str], values, digits: int = 3,
          indent: str = "  ") -> str:
    """A labelled grid: values[i][j] is shown at row i, column j."""
    first = max(len(name) for name in row_names)
    width = max(digits + 4, *(len(name) for name in column_names))
    lines = [indent + " " * first + "".join(f"  {name:>{width}}" for name in column_names)]
    for name, row in zip(row_names, values):
        cells = "".join(f"  {signed(float(v), digits):>{width}}" for v in row)
        lines.append(f"{indent}{name:<{first}}{cells}")
    return "\n".join(lines)


def report_steps(steps: int, times: int = 8) -> set[int]:
    """The steps at which to print the loss: the first, the last, and evenly in between."""
    return {round(i * (steps - 1) / times) for i in range(times + 1)}


def check_seed(seed: int) -> int:
    """Seeds are whole numbers from 0 up (NumPy's generators refuse negative ones)."""
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a whole number from 0 up, got {seed!r}")
    return seed
