"""Every command that changes something answers --json (every command but the services
that run in the foreground has the option); the CA's commands, the dashboard logins (list,
add, passwd, remove) and the seal drawing answer it, without a broker."""

from __future__ import annotations

import json
from pathlib import Path

import click

from docex.hub.config import BrokerConfig, HubConfig
from tests.cli.runner import every_command, run

# run in the foreground until stopped: their output is a log, not an answer
SERVICES = {"hub run", "agent run", "bridge run", "tsa run", "demo"}


def test_every_command_but_the_services_has_json() -> None:
    commands = {path: cmd for path, cmd in every_command() if not isinstance(cmd, click.Group)}
    seen = set(commands)
    missing = [path for path, cmd in commands.items()
               if path not in SERVICES and not any("--json" in getattr(p, "opts", ()) for p in cmd.params)]
    assert seen >= SERVICES
    for changing in ("sign-for", "return", "recall", "unit add", "unit import", "unit disable", "unit enable",
                     "unit phase", "hub init", "hub user add", "pki issue", "key passwd", "link create"):
        assert changing in seen
    assert missing == []


def test_a_seal_drawing_answers_json(tmp_path: Path) -> None:
    drawn = _json("seal", "draw", "--name", "阳山县信息中心", "-o", tmp_path / "seal.png")
    assert drawn == {"ok": True, "output": str(tmp_path / "seal.png")}
    assert (tmp_path / "seal.png").read_bytes().startswith(b"\x89PNG")


def _json(*args: str | Path) -> object:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_pki_commands_answer_json(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    assert _json("pki", "init", "--dir", ca, "--name", "阳山县信息中心", "--insecure-no-passphrase")["ok"]  # type: ignore[index]
    issued = _json("pki", "issue", "--dir", ca, "--unit", "qingyuan.yangshan.zfb", "--name", "县府办",
                   "--out", tmp_path / "zfb", "--insecure-no-passphrase")
    person = _json("pki", "issue-person", "--dir", ca, "--unit", "qingyuan.yangshan.zfb", "--name", "张三",
                   "--out", tmp_path / "p", "--insecure-no-passphrase")
    tsa = _json("pki", "issue-tsa", "--dir", ca, "--name", "时间戳", "--out", tmp_path / "tsa", "--insecure-no-passphrase")
    assert str(tsa["not_after"]).endswith("+08:00")  # type: ignore[index]
    revoked = _json("pki", "revoke", "--dir", ca, "--serial", issued["sign_serial"], "--reason", "key_compromise",  # type: ignore[index]
                    "--insecure-no-passphrase")
    assert revoked["serial"] == issued["sign_serial"] and person["ok"]  # type: ignore[index]
    assert _json("pki", "crl", "--dir", ca, "--out", tmp_path / "crl.pem", "--insecure-no-passphrase")["revoked"] == 1  # type: ignore[index]


def test_dashboard_logins(tmp_path: Path) -> None:
    HubConfig(home=tmp_path, prefix="qingyuan.yangshan", name="中心", database_url="sqlite://",
              broker=BrokerConfig(url="amqp://x:y@127.0.0.1/v", vhost="v")).save()
    (tmp_path / "pw").write_text("first-pass\n")
    (tmp_path / "pw2").write_text("second-pass\n")
    assert _json("hub", "user", "add", "--home", tmp_path, "--name", "wang", "--password-file", tmp_path / "pw") == \
        {"ok": True, "user": "wang", "replaced": False}
    assert _json("hub", "user", "list", "--home", tmp_path) == ["wang"]
    before = HubConfig.load(tmp_path).api.users["wang"]
    assert _json("hub", "user", "passwd", "--home", tmp_path, "--name", "wang", "--password-file", tmp_path / "pw2")["ok"]  # type: ignore[index]
    assert HubConfig.load(tmp_path).api.users["wang"] != before
    assert _json("hub", "user", "remove", "--home", tmp_path, "--name", "wang")["removed"]  # type: ignore[index]
    assert _json("hub", "user", "list", "--home", tmp_path) == []
    missing = run("hub", "user", "remove", "--home", tmp_path, "--name", "wang", "--json")
    assert missing.exit_code == 2 and json.loads(missing.output)["code"] == "unknown_user"
