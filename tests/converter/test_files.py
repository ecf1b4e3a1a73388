"""Atomic file output (``fp8conv.converter.files``)."""

from __future__ import annotations

import os

import pytest

from fp8conv.converter.files import atomic_path, atomic_write


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_completed_write_appears_whole_with_the_usual_permissions(tmp_path):
    destination = tmp_path / "sub" / "out.bin"
    with atomic_write(destination) as handle:
        handle.write(b"payload")
        assert not destination.exists()
    assert destination.read_bytes() == b"payload"
    assert destination.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert sorted(p.name for p in destination.parent.iterdir()) == ["out.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    destination = tmp_path / "out.bin"
    destination.write_bytes(b"old")

    def write_half() -> None:
        with atomic_write(destination) as handle:
            handle.write(b"half")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_half()
    assert destination.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_temporary_paths_are_distinct_hidden_files_beside_the_destination(tmp_path):
    destination = tmp_path / "model.onnx"
    with atomic_path(destination) as first, atomic_path(destination) as second:
        assert first != second
        assert first.parent == second.parent == tmp_path
        assert first.name.startswith(".model.onnx.")
        assert first.exists()
        assert first.stat().st_size == 0
        second.write_bytes(b"second")
        first.write_bytes(b"first")
    assert destination.read_bytes() == b"first"  # the outer block finished last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
