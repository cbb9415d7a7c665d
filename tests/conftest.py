"""Test setup: the shared data folder, no network, quiet threads."""

import os
from pathlib import Path

import pytest

_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
os.environ.setdefault("CHALKLM_DATA_DIR", str(_SHARED))
os.environ["CHALKLM_OFFLINE"] = "1"
# The glass box multiplies small matrices: one BLAS thread avoids threads spinning for a
# core that torch (or another test process) holds; must be set before NumPy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory) -> Path:
    """Every test (and every process it starts) keeps its caches in a temporary folder:
    the suite never writes into ~/.cache or beside the shared data. Session-wide and set
    first, so module- and session-scoped fixtures (models trained once) use it too."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("cache")
        patch.delenv("CHALKLM_CACHE_DIR", raising=False)
        patch.setenv("XDG_CACHE_HOME", str(folder))
        yield folder / "chalklm"


@pytest.fixture
def data_dir() -> Path:
    return Path(os.environ["CHALKLM_DATA_DIR"])


@pytest.fixture(scope="session")
def shakespeare() -> str:
    """Tiny Shakespeare's text."""
    path = Path(os.environ["CHALKLM_DATA_DIR"]) / "tinyshakespeare" / "input.txt"
    return path.read_text(encoding="utf-8")
