"""The operations guide on a clean state: install from a wheelhouse with no package index
into a fresh virtualenv and bring up a hub with two agents (scripts/offline-install-check.sh).
Slow (a few minutes); set DOCEX_WHEELHOUSE to reuse a wheelhouse `make wheelhouse` built."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq, pytest.mark.timeout(1500)]

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "offline-install-check.sh"


def test_install_from_the_wheelhouse_and_deliver() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if os.environ.get("DOCEX_WHEELHOUSE"):
        env["WHEELHOUSE"] = os.environ["DOCEX_WHEELHOUSE"]
    # its own process group: if it runs too long, the script and everything it started get
    # SIGTERM, and the script's trap removes its vhost, broker logins and work folder
    script = subprocess.Popen(["bash", str(SCRIPT)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, start_new_session=True)
    try:
        stdout, stderr = script.communicate(timeout=1400)
    except subprocess.TimeoutExpired:
        os.killpg(script.pid, signal.SIGTERM)
        stdout, stderr = script.communicate(timeout=60)
    assert script.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "OK: installed offline, delivered and signed for" in stdout
