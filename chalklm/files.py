"""Writing so that a crash never leaves half a file or folder.

Everything is written beside its target under a temporary name, then renamed into place:
a rename is all or nothing, so a reader sees the old version or the new one, never a mix.
`tempfile` makes its temporary names private (0600 files, 0700 folders); what is renamed
into place gets the mode an ordinary file or folder would have, so a shared data folder or
run folder stays readable by the people it is shared with.

Files: `write_atomic` (and `append_line` for logs, which only grow). Folders of files
(checkpoints, Hugging Face exports): `chalklm.checkpoint.write_folder`, which fills a
`folder_beside` the target.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from chalklm.errors import WriteError


def _umask() -> int:
    umask = os.umask(0)  # the only way to read it is to set it
    os.umask(umask)
    return umask


def refusal(target, exc: Exception) -> str:
    """The one-line message for a write the system refused."""
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if isinstance(exc, (FileExistsError, NotADirectoryError)):  # a file where a folder goes
        blocker = next((p for p in Path(target).parents if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker else why
    return f"could not write {target}: {why}; what was there before is unchanged"


def write_atomic(path: str | os.PathLike, content: str | bytes) -> None:
    """Write `content` (text as UTF-8, or bytes) to `path` in one rename. A write the
    system refuses is a WriteError, and `path` stays as it was."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        try:
            os.chmod(fd, 0o666 & ~_umask())
            binary = isinstance(content, bytes)
            with os.fdopen(fd, "wb" if binary else "w",
                           encoding=None if binary else "utf-8") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())  # on the disk before the rename makes it the file
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise WriteError(refusal(path, exc)) from exc


def check_writable(path: str | os.PathLike) -> None:
    """Refuse now a file that `write_atomic` would be refused later (a folder in the way,
    a parent that is a file, no permission, a full disk), before the work whose result it
    is to hold. Nothing is left behind but the parent folders."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"could not write {path}: it is a folder; name a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise WriteError(refusal(path, exc)) from exc


def settle(path: str | os.PathLike) -> None:
    """Treat a file another library wrote (safetensors' save_file) as `write_atomic`
    treats its own: an ordinary file's mode (safetensors writes 0600), and on the disk
    before the folder holding it is renamed into place."""
    os.chmod(path, 0o666 & ~_umask())
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def append_line(path: str | os.PathLike, line: str) -> None:
    """Add `line` and a newline to the end of a text file (a log: it only ever grows). A
    write the system refuses is a WriteError."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError as exc:
        raise WriteError(refusal(path, exc)) from exc


def folder_beside(folder: Path) -> Path:
    """A new empty folder next to `folder`, to fill and then rename onto it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.partial-"))
    tmp.chmod(0o777 & ~_umask())
    return tmp
