"""Atomic outputs: the target is the old file or the whole new one, never a part."""

from __future__ import annotations

import os

import pytest

from nnkit.errors import OutputPathError
from nnkit.fsutil import atomic_output, check_writable, write_text


def test_success_replaces_the_target_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    write_text(target, "new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["out.txt"]


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_or_ctrl_c_keeps_the_old_file_and_cleans_up(tmp_path, exc):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(type(exc)), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise exc
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_new_file_gets_the_umask_mode_not_0600(tmp_path):
    target = tmp_path / "fresh.txt"
    write_text(target, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_unwritable_paths_are_refused_up_front(tmp_path):
    with pytest.raises(OutputPathError, match="does not exist"):
        check_writable(tmp_path / "missing" / "f.onnx")
    with pytest.raises(OutputPathError, match="is a directory"):
        check_writable(tmp_path)
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(OutputPathError, match="not writable"):
            check_writable(ro / "f.onnx")
