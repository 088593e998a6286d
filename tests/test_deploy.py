"""The systemd units shipped in deploy/systemd/ pass `systemd-analyze verify` (with the
docex command pointed at this environment's, since /opt/docex is not installed here), and
every `docex ...` command the deployment files run (systemd units, docker-compose.yml, the
compose stack's init script) names a command and options the CLI has."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from docex.cli.main import cli

REPO = Path(__file__).resolve().parents[1]
UNITS = REPO / "deploy" / "systemd"
INIT = REPO / "docex" / "monitoring" / "compose" / "init.sh"
COMPOSE = REPO / "docker-compose.yml"


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


def _shell_commands(text: str) -> list[list[str]]:
    """The `docex ...` invocations in shell text: continuation lines joined, split at
    `;`, `&&`, `||`, `|` and line ends, redirections dropped."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        for part in re.split(r"&&|\|\||[;|]", line):
            words = shlex.split(part, comments=True) if part.strip() else []
            words = [w for w in words if not re.match(r"^\d?>", w)]
            for i, word in enumerate(words):
                if word == "docex" or word.endswith("/bin/docex"):
                    found.append(words[i + 1:])
                    break
    return found


def _deployed_commands() -> dict[str, list[list[str]]]:
    found = {"init.sh": _shell_commands(INIT.read_text("utf-8"))}
    for unit in sorted(UNITS.glob("*.service")):
        found[unit.name] = _shell_commands("\n".join(line.split("=", 1)[1] for line in unit.read_text("utf-8").splitlines()
                                                    if line.startswith("ExecStart")))
    for name, service in yaml.safe_load(COMPOSE.read_text("utf-8"))["services"].items():
        command, entrypoint = service.get("command"), service.get("entrypoint")
        if isinstance(command, list) and (service.get("build") or "docex" in str(service.get("image"))) \
                and entrypoint is None:
            found[f"compose {name}"] = [[str(w) for w in command]]  # the image's entrypoint is docex
        elif isinstance(command, list) and entrypoint == ["sh", "-c"]:
            found[f"compose {name}"] = _shell_commands("\n".join(command))
    return found


def _check(words: list[str]) -> str | None:
    """Why `docex WORDS` would not parse, or None."""
    command: click.Command = cli
    path = ["docex"]
    while isinstance(command, click.Group):
        if not words or words[0].startswith("-"):
            return f"{' '.join(path)} needs a subcommand"
        ctx = click.Context(command, info_name=path[-1])
        sub = command.get_command(ctx, words[0])
        if sub is None:
            return f"{' '.join(path)} has no command {words[0]!r}"
        path.append(words.pop(0))
        command = sub
    options = {opt for p in command.params if isinstance(p, click.Option) for opt in (*p.opts, *p.secondary_opts)}
    unknown = [w.split("=")[0] for w in words if w.startswith("--") and w.split("=")[0] not in options | {"--help"}]
    if unknown:
        return f"{' '.join(path)} has no option {', '.join(unknown)}"
    required = [p for p in command.params if isinstance(p, click.Option) and p.required
                and not any(w.split("=")[0] in p.opts for w in words)]
    if required:
        return f"{' '.join(path)} needs {', '.join(p.opts[0] for p in required)}"
    return None


def test_every_deployed_docex_command_exists_with_its_options() -> None:
    found = _deployed_commands()
    assert {"init.sh", "docex-hub.service", "compose hub", "compose bridge", "compose broker-tls"} <= set(found)
    assert any(words[:2] == ["link", "create"] for words in found["init.sh"])  # the link to the city is made
    problems = [f"{where}: docex {' '.join(words)}: {why}" for where, commands in found.items() for words in commands
                if (why := _check(list(words)))]
    assert problems == []


def test_the_check_catches_a_command_or_option_the_cli_lacks() -> None:
    assert _check(["link", "add", "--home", "H"]) == "docex link has no command 'add'"
    assert _check(["link", "create", "--home", "H", "--child", "a.b", "--out", "B", "--remote-amqp", "x"]) == \
        "docex link create has no option --remote-amqp"
    assert _check(["link", "create", "--home", "H"]) == "docex link create needs --child, --out"
    assert _shell_commands('[ -f x ] || docex pki init --dir "/a b";\ndocex hub run \\\n  --home H 2>&1') == \
        [["pki", "init", "--dir", "/a b"], ["hub", "run", "--home", "H"]]
