"""A durable write: the whole file or the old one, nothing left aside, `once` keeps the first."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from docex.protocols.durable import write_durably


def test_writes_whole_private_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.bin"
    write_durably(target, b"first")
    assert target.read_bytes() == b"first" and stat.S_IMODE(target.stat().st_mode) == 0o600
    write_durably(target, b"second")
    assert target.read_bytes() == b"second"
    write_durably(target, b"third", once=True)  # a redelivery's copy: the first stays
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["b.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "b.bin"
    write_durably(target, b"old")
    with pytest.raises(TypeError):
        write_durably(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["b.bin"]
