"""Files written whole or not at all, and on disk before anyone is told they exist.

Written aside, fsynced, renamed over the target, then the folder fsynced so the rename
itself survives a power cut: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def write_durably(path: Path, data: bytes, *, mode: int = 0o600, once: bool = False) -> None:
    """`path` holds `data` durably. With `once`, an existing file is left as it is (the same
    content written again by a redelivery costs nothing)."""
    if once and path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique per process and thread: two writers of one path never share a temporary file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if os.name == "nt":  # Windows cannot open a folder as a file; NTFS journals the rename
        return
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
