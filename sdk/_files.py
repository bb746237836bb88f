"""Files written whole or not at all: a reader (or a crash) sees the old content or the new, never half."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["write_atomic", "write_new", "write_text_atomic"]


@contextlib.contextmanager
def _flushed_beside(path: Path, data: bytes) -> Iterator[Path]:
    """``data`` in a temporary file beside ``path``, flushed to disk; the temporary file is gone afterwards."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    # Created like any new file (0666 less the umask, so a site's umask 077 keeps received images private),
    # and never over an existing one.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: written aside, flushed to disk, then renamed over it."""
    with _flushed_beside(path, data) as tmp:
        os.replace(tmp, path)


def write_new(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data`` whole, never replacing a file already there (for content-named files,
    whose name says what they hold: a concurrent writer's copy is kept as it is).

    Returns:
        Whether this call created the file; False when one was there already.
    """
    with _flushed_beside(path, data) as tmp:
        try:
            os.link(tmp, path)  # fails if path exists, so another writer's file is never replaced
        except FileExistsError:
            return False
        except OSError:
            # Filesystems without hard links: fall back to rename (same content by construction).
            if path.exists():
                return False
            os.replace(tmp, path)
        return True


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8, line ends as given)."""
    write_atomic(path, text.encode("utf-8"))
