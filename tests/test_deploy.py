"""The systemd units shipped in deploy/systemd/ pass `systemd-analyze verify` (with the
docex command pointed at this environment's, since /opt/docex is not installed here)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[1] / "deploy" / "systemd"


def _docex() -> str:
    script = Path(sys.executable).parent / "docex"
    return str(script if script.exists() else shutil.which("docex") or "")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (apt-get install systemd; scripts/setup-machine.sh does)")
def test_every_unit_verifies(tmp_path: Path) -> None:
    files = sorted(UNITS.glob("*.service"))
    assert {f.name for f in files} == {"docex-hub.service", "docex-agent@.service", "docex-bridge.service",
                                       "docex-tsa.service"}
    docex = _docex()
    assert docex, "no docex console script in this environment"
    checked = []
    for unit in files:
        text = unit.read_text("utf-8").replace("/opt/docex/venv/bin/docex", docex)
        name = unit.name.replace("@.service", "@qingyuan.yangshan.zfb.service")  # a template needs an instance
        (tmp_path / name).write_text(text, "utf-8")
        if name != unit.name:
            (tmp_path / unit.name).write_text(text, "utf-8")
        checked.append(tmp_path / name)
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, checked)],
                            capture_output=True, text=True, timeout=120)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "docex" in line and "Documentation" not in line]
    assert result.returncode == 0 and problems == [], result.stdout + result.stderr
