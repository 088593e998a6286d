"""Unit terminals in a county run Windows: the agent and the desk (and what they import
from below: protocols, pki, broker) must stay pure Python with no POSIX-only calls on their
paths. A scan of the source, so a new one is caught where it is written."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "docex"
PACKAGES = ("agent", "protocols", "pki", "broker")
POSIX_MODULES = {"fcntl", "termios", "pwd", "grp", "resource", "posix", "tty", "pty", "syslog", "crypt"}
POSIX_OS = {"fork", "forkpty", "getuid", "geteuid", "getgid", "getegid", "setuid", "setgid", "setsid", "killpg",
            "chown", "lchown", "fchown", "getpgid", "setpgid", "uname", "mkfifo", "nice", "getloadavg", "sync",
            "wait3", "wait4", "getpwnam", "sysconf", "statvfs", "fchmod", "openpty"}
POSIX_SIGNALS = {"SIGKILL", "SIGSTOP", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGCHLD", "SIGALRM", "SIGQUIT", "SIGPIPE", "SIGCONT"}


def _offences(path: Path, root: Path = ROOT.parent) -> list[str]:
    tree = ast.parse(path.read_text("utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in POSIX_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in POSIX_MODULES:
            found.append(f"from {node.module} import")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "os" and node.attr in POSIX_OS:
                found.append(f"os.{node.attr}")
            if node.value.id == "signal" and (node.attr in POSIX_SIGNALS or node.attr in ("pause", "alarm", "setitimer")):
                found.append(f"signal.{node.attr}")
            if node.value.id == "loop" and node.attr == "add_signal_handler":
                found.append("loop.add_signal_handler")
    return [f"{path.relative_to(root)}:{item}" for item in found]


def test_agent_desk_and_their_foundations_are_portable() -> None:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    assert any(p.parent.name == "desk" for p in files)  # the desk is scanned too
    offences = [o for p in files for o in _offences(p)]
    assert offences == []


def test_the_scan_catches_what_it_claims(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import os, signal, fcntl\nos.fork()\nos.getuid()\nsignal.SIGKILL\n", "utf-8")
    offences = _offences(probe, tmp_path)
    assert {o.split(":", 1)[1] for o in offences} == {"import fcntl", "os.fork", "os.getuid", "signal.SIGKILL"}
