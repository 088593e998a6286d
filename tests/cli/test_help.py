"""Clerks read Chinese first: every command's --help starts in Chinese (English after)."""

from __future__ import annotations

import re

import click

from docex.cli.main import cli

CJK = re.compile(r"[\u4e00-\u9fff]")


def test_every_command_help_starts_in_chinese() -> None:
    ctx = click.Context(cli)
    english_first = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    walk(sub, [*path, name])
        if not CJK.match((cmd.help or "").strip()):
            english_first.append(" ".join(path) or "docex")

    walk(cli, [])
    assert english_first == []
