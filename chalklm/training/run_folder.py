"""The run folder (`--out`): checked and claimed before the first step, so a mistake costs
no training and nothing of the user's is overwritten.

A folder is a chalklm run when it holds the marker file `.chalklm-run` (written before
the first step) or a `best/` or `last/` checkpoint. A new run goes into a new or empty
folder, or into a run that never saved (killed before its first checkpoint; its metrics
are dropped). Any other folder is refused unless the user passes --force: a folder of
their own may hold a `sample.txt` or `metrics.jsonl` that the run would replace. A new
run clears the old run's files first, so nothing of the two runs mixes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from chalklm.checkpoint import TRAINER_STATE_FILE, leftover_of, tidy_leftovers
from chalklm.errors import ConfigError, WriteError
from chalklm.files import refusal, write_atomic

RUN_MARKER = ".chalklm-run"
CHECKPOINTS = ("best", "last")
RESULTS = ("metrics.jsonl", "loss.png", "sample.txt")  # replaced by a new run
# everything a run writes at the top of its folder (translation adds snapshots/, averaged/)
OWN_NAMES = (RUN_MARKER, *CHECKPOINTS, *RESULTS, "snapshots", "averaged")


def check(out: str, resume: bool, force: bool) -> None:
    """Refuse an --out the run cannot use, before anything is read or trained."""
    if not str(out).strip():
        raise ConfigError("--out is empty; name the run folder, e.g. --out runs/mine")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {folder} is a file, not a folder; name a new folder or a "
                          "run's folder")
    if resume:
        if not _resumable(folder):
            raise ConfigError(f"--resume: {folder / 'last'} holds no resumable checkpoint; "
                              "start a new run without --resume")
        return
    if force:
        return
    if _resumable(folder):
        raise ConfigError(f"{folder} already holds a run; pass --resume to continue it, "
                          "--force to start it over, or choose another --out (nothing was "
                          "overwritten)")
    if _has_checkpoint(folder):  # best/ alone: stopped between the first two saves
        raise ConfigError(f"{folder} holds a best/ checkpoint but no last/ to resume from; "
                          "pass --force to start the run over, or choose another --out "
                          "(nothing was overwritten)")
    if not (folder / RUN_MARKER).is_file():
        entries = sorted(p.name for p in folder.iterdir()
                         if leftover_of(p.name, OWN_NAMES) is None) if folder.is_dir() else []
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise ConfigError(f"{folder} is not empty ({shown}) and not a chalklm run; choose "
                              "a new or empty --out, or pass --force to train there (the "
                              f"run writes {', '.join(CHECKPOINTS + RESULTS)})")


def claim(out: str, resume: bool) -> None:
    """Make the folder, clear what an interrupted run left, mark it as a run. A folder the
    system refuses is a WriteError now, not after the training."""
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(refusal(folder, exc)) from exc
    tidy_leftovers(folder, OWN_NAMES)
    tidy_leftovers(folder / "snapshots")
    write_atomic(folder / RUN_MARKER, "a chalklm training run: best/ and last/ are "
                 "checkpoints, metrics.jsonl the log (chalklm train --resume continues it)\n")
    if not resume:
        start_over(folder)


def start_over(folder: Path) -> None:
    """A new run in a run's folder (--force, or a run that never saved) first clears what
    the old run wrote: its checkpoints would otherwise be resumed if the new run stopped
    before its first save, its snapshots averaged with the new run's, its log continued."""
    for name in OWN_NAMES:
        path = folder / name
        if name == RUN_MARKER or not path.exists():
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:
            raise WriteError(refusal(path, exc)) from exc
    write_atomic(folder / "metrics.jsonl", "")  # the log starts empty


def _has_checkpoint(folder: Path) -> bool:
    """best/ or last/, or one moved aside by a save that was cut off."""
    return any((folder / name).exists() or any(folder.glob(f".{name}.old-*"))
               for name in CHECKPOINTS)


def _resumable(folder: Path) -> bool:
    return (folder / "last" / TRAINER_STATE_FILE).is_file() or any(
        folder.glob(f".last.old-*/{TRAINER_STATE_FILE}"))
