"""Clerks read Chinese first: every command's --help starts in Chinese (English after)."""

from __future__ import annotations

import re

from tests.cli.runner import every_command

CJK = re.compile(r"[\u4e00-\u9fff]")


def test_every_command_help_starts_in_chinese() -> None:
    english_first = [path or "docex" for path, cmd in every_command() if not CJK.match((cmd.help or "").strip())]
    assert english_first == []
