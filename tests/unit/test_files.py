"""okaflow._files: whole-or-nothing writes that keep the site's file permissions."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from okaflow._files import write_atomic, write_new, write_text_atomic


@pytest.fixture
def umask_077() -> Iterator[None]:
    before = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(before)


def test_atomic_writes_replace_and_leave_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "job.json"
    write_text_atomic(target, "old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["job.json"]


def test_a_new_file_never_replaces_one_already_there(tmp_path: Path) -> None:
    target = tmp_path / "abc.png"
    assert write_new(target, b"first") is True
    assert write_new(target, b"second") is False
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["abc.png"]


def test_files_get_the_sites_umask_not_a_fixed_mode(tmp_path: Path, umask_077: None) -> None:
    write_atomic(tmp_path / "instance.dcm", b"DICM")
    write_new(tmp_path / "artifact.png", b"PNG")
    for name in ("instance.dcm", "artifact.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
