"""The `docex` command. Subcommands live in their own modules and load lazily, so
`docex pki ...` on an office terminal never imports the hub's web stack."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

# name -> "module:attribute"; one line per command, so each part adds its own.
COMMANDS: dict[str, str] = {
    "pki": "docex.cli.pki:pki",
    "envelope": "docex.cli.envelope:envelope",
    "hub": "docex.cli.hub:hub",
    "unit": "docex.cli.hub:unit",
    "audit": "docex.cli.hub:audit",
    "track": "docex.cli.hub:track",
    "documents": "docex.cli.hub:documents",
    "agent": "docex.cli.agent:agent",
    "send": "docex.cli.agent:send",
    "directory": "docex.cli.agent:directory",
    "inbox": "docex.cli.agent:inbox",
    "sign-for": "docex.cli.agent:sign_for",
    "return": "docex.cli.agent:return_",
    "sent": "docex.cli.agent:sent",
    "recall": "docex.cli.agent:recall",
    "seal": "docex.cli.seal:seal",
    "compose": "docex.cli.seal:compose",
    "tsa": "docex.cli.seal:tsa",
    "link": "docex.cli.link:link",
    "bridge": "docex.cli.link:bridge",
    "demo": "docex.cli.demo:demo",
    "broker": "docex.cli.broker:broker",
    "key": "docex.cli.enroll:key",
    "evidence": "docex.cli.evidence:evidence",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None  # part not built yet
            raise
        cmd: click.Command = getattr(module, attr)
        return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="docex")
def cli() -> None:
    """电子公文交换系统 docex — electronic official-document exchange. 每个命令都有 --help；--json 供脚本使用。"""


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="docex")


if __name__ == "__main__":
    sys.exit(main())
