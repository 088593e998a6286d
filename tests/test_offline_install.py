"""The operations guide on a clean state: install from a wheelhouse with no package index
into a fresh virtualenv and bring up a hub with two agents (scripts/offline-install-check.sh).
Slow (a few minutes); set DOCEX_WHEELHOUSE to reuse a wheelhouse `make wheelhouse` built."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq]

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "offline-install-check.sh"


def test_install_from_the_wheelhouse_and_deliver() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if os.environ.get("DOCEX_WHEELHOUSE"):
        env["WHEELHOUSE"] = os.environ["DOCEX_WHEELHOUSE"]
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "OK: installed offline, delivered and signed for" in result.stdout
