"""How a run shows its progress: a live bar on a terminal, a plain line now and then elsewhere.

A tqdm bar redraws itself several times a second with carriage returns. On a terminal that
is one line that moves; piped to a file or a job log, every frame stays (a 5-minute run
wrote 92 KB of them). So when the stream is not a terminal, the same numbers are written
as one plain line every PLAIN_EVERY_S seconds, and once more at the end. `--no-progress`
shows neither.
"""

from __future__ import annotations

import sys
import time

PLAIN_EVERY_S = 10.0


class PlainProgress:
    """The part of tqdm's interface the trainer uses (`n`, `update`, `set_postfix_str`,
    `write`, `close`), written as plain lines at most every `every` seconds."""

    def __init__(self, total: float, initial: float = 0, unit: str = "", desc: str = "",
                 file=None, every: float = PLAIN_EVERY_S, clock=time.monotonic):
        self.total, self.n, self.unit, self.desc = total, initial, unit, desc
        self.file, self.every, self.clock = file or sys.stderr, every, clock
        self.postfix, self.last_shown, self.shown_n = "", clock(), initial

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.clock() - self.last_shown >= self.every:
            self._show()

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def write(self, text: str) -> None:
        """A line of its own on stdout (tqdm's `write`: there it goes above the bar)."""
        print(text, flush=True)

    def close(self) -> None:
        if self.n != self.shown_n:
            self._show()

    def _show(self) -> None:
        done = f"{self.n:.0f}/{self.total:.0f}{self.unit}"
        print(f"{self.desc}: {done}" + (f", {self.postfix}" if self.postfix else ""),
              file=self.file, flush=True)
        self.last_shown, self.shown_n = self.clock(), self.n


def is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_display(total: float, initial: float = 0, unit: str = "step",
                     show: bool = True, bar_format: str | None = None, file=None):
    """A tqdm bar on a terminal; PlainProgress lines elsewhere; a silent bar if not `show`."""
    from tqdm import tqdm

    file = file or sys.stderr
    if show and not is_terminal(file):
        plain_unit = " steps" if unit == "step" else unit
        return PlainProgress(total, initial, unit=plain_unit, desc="training", file=file)
    return tqdm(total=total, initial=initial, unit=unit, disable=not show, desc="training",
                dynamic_ncols=True, file=file, bar_format=bar_format)
