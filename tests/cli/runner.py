"""Helpers for the foundation's CLI tests: run `docex` in-process (click's runner) or as the installed
console script, and check that a refusal is one clear line with its code and exit 2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
from click.testing import CliRunner, Result

from docex.cli.main import cli


def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    """`run("pki", "init", ..., env={...})` in-process; no DOCEX_PASSPHRASE leaks in from outside."""
    full_env: dict[str, str | None] = {"DOCEX_PASSPHRASE": None, **(env or {})}
    return CliRunner().invoke(cli, [str(a) for a in args], env=full_env, catch_exceptions=True)


def refused(result: Result, code: str) -> str:
    """The refusal line, after checking it is exactly one line, names `code`, exits 2."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert f"[{code}]" in lines[0] and "Traceback" not in result.output
    return lines[0]


def docex_binary() -> list[str]:
    script = Path(sys.executable).parent / "docex"
    if script.exists():
        return [str(script)]
    found = shutil.which("docex")
    return [found] if found else [sys.executable, "-m", "docex.cli.main"]


def run_binary(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "DOCEX_PASSPHRASE"} | (env or {})
    return subprocess.run([*docex_binary(), *map(str, args)], capture_output=True, text=True, env=full_env)


def every_command() -> Iterator[tuple[str, click.Command]]:
    """Every visible command and group, as ("hub user add", command); the top is ("", cli)."""
    ctx = click.Context(cli)

    def walk(cmd: click.Command, path: list[str]) -> Iterator[tuple[str, click.Command]]:
        yield " ".join(path), cmd
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    yield from walk(sub, [*path, name])

    yield from walk(cli, [])
