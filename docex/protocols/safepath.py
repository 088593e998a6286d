"""Paths built from values a peer chose (a message id, a file name, a prefix) must stay
inside their folder. `inside` proves it on the resolved path (symlinks followed, `..`
collapsed) rather than trusting any check of the value's spelling, and is the one place
every such path is built."""

from __future__ import annotations

import os
from pathlib import Path

from docex.protocols.errors import DocexError


def inside(folder: str | os.PathLike[str], *parts: str, code: str = "unsafe_filename") -> Path:
    """`folder/part/...`, resolved, if it lies strictly inside `folder`; else a refusal."""
    base = Path(folder).resolve()
    for part in parts:
        if not part or "\x00" in part or os.path.isabs(part):
            raise DocexError(code, f"unsafe path component {part[:80]!r}")
    candidate = base.joinpath(*parts).resolve()
    if candidate == base or not candidate.is_relative_to(base):
        raise DocexError(code, f"{'/'.join(parts)[:120]!r} would lie outside {base}")
    return candidate


def create_exclusive(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write a new file; never replace one that is there (FileExistsError)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def private_dir(path: str | os.PathLike[str]) -> Path:
    """A folder only its owner can enter (0700), whatever the umask; made if missing."""
    target = Path(path)
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(target, 0o700)
    return target


def private_sqlite(url: str) -> None:
    """Create a SQLite database file (and tighten its journal files) as 0600 before SQLite
    does with the umask's permissions: it holds documents' metadata and the audit log.
    SQLite gives its -wal and -shm files the database file's permissions."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix or ":memory:" in url:
        return
    db = Path(url[len(prefix):].split("?", 1)[0])
    if not db.parent.exists():
        return
    fd = os.open(db, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}-journal")):
        if path.exists():
            os.chmod(path, 0o600)
