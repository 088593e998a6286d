"""Real outages for fault tests: a PostgreSQL instance of the test's own (so stopping it
disturbs nobody else), and a small tmpfs that fills up under an agent's inbox."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest


def _free_port(low: int = 5400, high: int = 5500) -> int:
    """A free port outside the ephemeral range, so no client socket can take it meanwhile."""
    for port in range(low, high):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port for a private PostgreSQL")


@dataclass
class PrivatePostgres:
    bindir: Path
    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/docex"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bindir / "pg_ctl"), "-D", str(self.data), *args],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=120)

    def start(self) -> None:
        self._pg_ctl("-w", "-l", str(self.data / "server.log"), "-o",
                     f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "fast", "stop")

    @classmethod
    def create(cls) -> PrivatePostgres:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found or os.geteuid() != 0 or shutil.which("runuser") is None:
            pytest.skip("a private PostgreSQL needs Debian's postgresql server binaries and root (runuser)")
        bindir = Path(found[-1]).parent
        root = Path(tempfile.mkdtemp(prefix="docex-pg-"))
        os.chmod(root, 0o755)
        data = root / "data"
        data.mkdir()
        shutil.chown(data, "postgres", "postgres")
        subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(data), "-A", "trust",
                        "-U", "postgres", "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL, timeout=120)
        pg = cls(bindir, data, _free_port())
        pg.start()
        subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "createdb"), "-h", "127.0.0.1", "-p",
                        str(pg.port), "docex"], check=True, timeout=60)
        return pg

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.data.parent, ignore_errors=True)


class SmallDisk:
    """A tmpfs of `size` mounted on `folder`; `fill()` takes every byte, `free()` gives them back."""

    def __init__(self, folder: Path, size: str = "2m") -> None:
        if os.geteuid() != 0:
            pytest.skip("mounting a small disk needs root")
        folder.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        self.folder = folder
        self.filler = folder / ".filler"

    def fill(self) -> None:
        block = b"\0" * 65536
        with open(self.filler, "ab", buffering=0) as fh:  # unbuffered: closing cannot fail
            try:
                while True:
                    fh.write(block)
            except OSError:
                pass
            try:
                while True:  # the last few bytes too
                    fh.write(b"\0" * 512)
            except OSError:
                pass

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.folder)], check=False)
