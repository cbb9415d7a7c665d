"""Atomic writes: all or nothing, and results as readable as ordinary files."""

import os
import stat

import pytest

from chalklm.errors import WriteError
from chalklm.files import folder_beside, write_atomic


@pytest.fixture
def umask_022():
    before = os.umask(0o022)
    yield
    os.umask(before)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_text_and_bytes_land_whole_with_ordinary_modes(tmp_path, umask_022):
    write_atomic(tmp_path / "a" / "t.txt", "héllo\n")
    write_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "a" / "t.txt").read_bytes() == "héllo\n".encode()
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert mode(tmp_path / "a" / "t.txt") == mode(tmp_path / "b.bin") == 0o644
    assert mode(folder_beside(tmp_path / "c")) == 0o755


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    write_atomic(tmp_path / "f", "old")
    with pytest.raises(TypeError):
        write_atomic(tmp_path / "f", ["not", "text"])
    assert (tmp_path / "f").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_a_refused_write_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "a_file").write_text("in the way")
    with pytest.raises(WriteError, match=r"could not write .*a_file/t.json: .*unchanged"):
        write_atomic(tmp_path / "a_file" / "t.json", "{}")
    assert (tmp_path / "a_file").read_text() == "in the way"
