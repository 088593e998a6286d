"""Unit terminals in a county run Windows: the agent and the desk, and every docex module
they import (followed transitively: protocols, pki, broker, documents, monitoring helpers),
must stay pure Python with no POSIX-only calls on their paths. A scan of the source, so a
new one is caught where it is written. (Server-side modules the agent never imports, such
as the broker's TLS registry, may use POSIX calls.)"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "docex"
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


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != "docex":
        return None
    base = ROOT.parent.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _agent_path() -> list[Path]:
    """docex/agent/** and every docex module reachable from it by import (also imports
    inside functions, and the packages on the way)."""
    todo = list((ROOT / "agent").rglob("*.py"))
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                parts = name.split(".")
                for i in range(2, len(parts) + 1):  # the packages on the way run their __init__
                    found = _module_file(".".join(parts[:i]))
                    if found is not None and found not in seen:
                        todo.append(found)
    return sorted(seen)


def test_agent_desk_and_what_they_import_are_portable() -> None:
    files = _agent_path()
    assert any(p.parent.name == "desk" for p in files)  # the desk is scanned too
    assert any(p.parent.name == "pki" for p in files) and any(p.parent.name == "broker" for p in files)
    offences = [o for p in files for o in _offences(p)]
    assert offences == []


def test_the_scan_catches_what_it_claims(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import os, signal, fcntl\nos.fork()\nos.getuid()\nsignal.SIGKILL\n", "utf-8")
    offences = _offences(probe, tmp_path)
    assert {o.split(":", 1)[1] for o in offences} == {"import fcntl", "os.fork", "os.getuid", "signal.SIGKILL"}
