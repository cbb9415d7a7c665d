"""The dataset registry: one place that knows every named dataset.

A named dataset is looked up, in order, in
  1. the folder named by the environment variable CHALKLM_DATA_DIR,
  2. the user cache (~/.cache/chalklm, $XDG_CACHE_HOME/chalklm, or $CHALKLM_CACHE_DIR),
  3. its canonical public address, downloaded into the cache and checked against a
     pinned sha256 (a mismatch is deleted, never used). CHALKLM_OFFLINE=1 skips this.
`python-docs` needs none of that: it is English prose that ships inside every CPython.
Anything that is not a registered name is read as a path to a local UTF-8 text file.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from chalklm.errors import DataError
from chalklm.files import write_atomic

DEFAULT_DATASET = "shakespeare"
_MULTI30K_RAW = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where it lives locally, where to fetch it, what it must hash to."""

    relpath: str  # inside the dataset's folder, e.g. "tinyshakespeare/input.txt"
    url: str
    sha256: str  # of the downloaded bytes
    gunzip: bool = False  # the download is gzip; the local copy is the plain text


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    files: dict[str, RemoteFile] = field(default_factory=dict)  # role -> file


def _multi30k_files() -> dict[str, RemoteFile]:
    sums = {
        "train.de": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
        "train.en": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
        "val.de": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
        "val.en": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
        "test_2016_flickr.de": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
        "test_2016_flickr.en": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    }
    return {
        role: RemoteFile(f"multi30k/{role}", f"{_MULTI30K_RAW}/{role}.gz", digest, gunzip=True)
        for role, digest in sums.items()
    }


DATASETS: dict[str, Dataset] = {
    "shakespeare": Dataset(
        "shakespeare",
        "Tiny Shakespeare, 1.1 MB of plays (karpathy/char-rnn)",
        {
            "text": RemoteFile(
                "tinyshakespeare/input.txt",
                "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                "tinyshakespeare/input.txt",
                "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            )
        },
    ),
    "multi30k": Dataset(
        "multi30k", "Multi30k German-English image captions (task 1, raw)", _multi30k_files()
    ),
    "python-docs": Dataset(
        "python-docs", "English prose shipped inside CPython (pydoc_data.topics), always offline"
    ),
}


def data_dir() -> Path | None:
    value = os.environ.get("CHALKLM_DATA_DIR")
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """The user cache: downloads, token ids, measured peaks. $CHALKLM_CACHE_DIR moves it;
    otherwise $XDG_CACHE_HOME/chalklm, or ~/.cache/chalklm."""
    if os.environ.get("CHALKLM_CACHE_DIR"):
        return Path(os.environ["CHALKLM_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "chalklm"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(remote: RemoteFile, target: Path) -> None:
    """Fetch, check the pinned sha256, unpack if gzip, and move into place atomically."""
    try:
        with urllib.request.urlopen(remote.url, timeout=30) as response:
            payload = response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(f"download of {remote.url} failed ({exc})") from exc
    if _sha256(payload) != remote.sha256:
        raise DataError(f"download of {remote.url} has the wrong sha256; nothing was saved")
    if remote.gunzip:
        payload = gzip.decompress(payload)
    write_atomic(target, payload)


def dataset_file(name: str, role: str | None = None, download: bool = True) -> Path:
    """The local path of one file of a named dataset, downloading it if needed."""
    if name not in DATASETS or not DATASETS[name].files:
        raise DataError(f"{name!r} is not a dataset with files; known: {', '.join(DATASETS)}")
    files = DATASETS[name].files
    role = role or next(iter(files))
    if role not in files:
        raise DataError(f"dataset {name!r} has no file {role!r}; it has: {', '.join(files)}")
    remote = files[role]
    tried = []
    for folder in (data_dir(), cache_dir()):
        if folder is None:
            continue
        candidate = folder / remote.relpath
        if candidate.is_file():
            return candidate
        tried.append(str(candidate))
    target = cache_dir() / remote.relpath
    if download and os.environ.get("CHALKLM_OFFLINE"):
        tried.append("no download: CHALKLM_OFFLINE is set")
    elif download:
        try:
            _download(remote, target)
            return target
        except DataError as exc:
            tried.append(str(exc))
    raise DataError(
        f"dataset {name!r} not found (tried {'; '.join(tried)}). Fix: set CHALKLM_DATA_DIR to a "
        f"folder holding {remote.relpath}, or copy it to {target}, or connect to the internet "
        "so it can be downloaded"
    )


def python_docs_text() -> str:
    """English prose that ships with CPython: the help topics of the pydoc module."""
    try:
        from pydoc_data.topics import topics
    except ImportError as exc:  # pragma: no cover - every CPython ships it
        raise DataError("this Python lacks pydoc_data, so 'python-docs' is unavailable") from exc
    return "\n\n".join(topics[key].strip() for key in sorted(topics)) + "\n"


def read_text_file(path: str | os.PathLike) -> str:
    """Read a local file as UTF-8 text; an empty, binary or non-UTF-8 file is a clear error."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file (and not a dataset name: {', '.join(DATASETS)})")
    if not path.is_file():
        raise DataError(f"{path}: is a directory, not a text file")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: the file is empty; give a file with some text in it")
    if b"\x00" in raw[:65536]:
        raise DataError(f"{path}: looks binary (contains NUL bytes); give a UTF-8 text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not valid UTF-8 at byte {exc.start}; convert it, e.g. with iconv -t UTF-8"
        ) from exc


def load_text(name_or_path: str) -> str:
    """The whole text of a named dataset (`shakespeare`, `python-docs`) or of a local file."""
    if name_or_path == "python-docs":
        return python_docs_text()
    if name_or_path in DATASETS:
        files = DATASETS[name_or_path].files
        if "text" not in files:
            raise DataError(
                f"{name_or_path!r} is a parallel corpus, not one text; use its files "
                f"({', '.join(files)}) through chalklm.data.dataset_file"
            )
        return read_text_file(dataset_file(name_or_path, "text"))
    return read_text_file(name_or_path)


def load_default_text() -> tuple[str, str]:
    """(name, text) of the default dataset; falls back to python-docs offline, saying so."""
    try:
        return DEFAULT_DATASET, load_text(DEFAULT_DATASET)
    except DataError as exc:
        print(f"chalklm: {exc}; using 'python-docs' instead", file=sys.stderr)
        return "python-docs", python_docs_text()
