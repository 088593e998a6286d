"""The unit's commands on an agent home (no broker needed: the service is not running):
`docex send` queues and prints the message id, refusals are one line with their code,
`docex inbox`, `sign-for`, `return` and `sent` show and change what the store holds."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from docex.agent.receiving import Receiver
from docex.hub.config import BrokerConfig, HubConfig
from tests.agent.homes import County, build_county, foreign_units, letter, outgoing
from tests.cli.runner import refused, run
from tests.conftest import Pki

XXZX, ZFB, FGJ = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "qingyuan.yangshan.fgj"


@pytest.fixture(scope="module")
def county(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> County:
    return build_county(pki, tmp_path_factory.mktemp("county"))


@pytest.fixture
def note(tmp_path: Path) -> Path:
    path = tmp_path / "通知.txt"
    path.write_bytes("请于周一上午九时到县政府三楼会议室开会。".encode())
    return path


def _send(county: County, note: Path, *extra: str) -> str:
    result = run("send", "--home", county.homes[XXZX], "--to", f"{ZFB},{FGJ}", "--title", "会议通知",
                 "--doc-number", "阳信发〔2011〕20号", *extra, note)
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_send_queues_while_the_service_is_down_and_prints_the_id(county: County, note: Path) -> None:
    mid = _send(county, note, "--cc", XXZX, "--priority", "加急")
    assert str(uuid.UUID(mid)) == mid
    as_json = run("send", "--home", county.homes[XXZX], "--to", ZFB, "--title", "t", "--doc-number", "n", note, "--json")
    assert json.loads(as_json.output)["message_id"]
    sent = json.loads(run("sent", "--home", county.homes[XXZX], "--json").output)
    mine = next(d for d in sent if d["message_id"] == mid)
    assert mine["priority"] == "加急" and mine["state"] == "queued"
    assert mine["created_at"].endswith("+08:00")  # local time with its offset, as everywhere
    assert {r["address"]: r["state"] for r in mine["recipients"]} == {ZFB: "queued", FGJ: "queued", XXZX: "queued"}
    text = run("sent", "--home", county.homes[XXZX]).output
    assert "待发送" in text and "阳信发〔2011〕20号" in text


@pytest.mark.parametrize(("args", "code"), [
    (("--to", "qingyuan.yangshan.nosuch"), "unknown_recipient"),
    (("--to", ZFB, "--classification", "机密"), "classified"),
    (("--to", "NOT AN ADDRESS"), "bad_metadata"),
])
def test_send_refusals_are_one_line_with_their_code(county: County, note: Path, args: tuple[str, ...], code: str) -> None:
    refused(run("send", "--home", county.homes[XXZX], *args, "--title", "t", "--doc-number", "n", note), code)


def test_send_needs_a_valid_priority_and_a_real_home(county: County, note: Path, tmp_path: Path) -> None:
    bad = run("send", "--home", county.homes[XXZX], "--to", ZFB, "--title", "t", "--doc-number", "n",
              "--priority", "紧急", note)
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    refused(run("send", "--home", tmp_path, "--to", ZFB, "--title", "t", "--doc-number", "n", note), "no_agent")


def test_inbox_sign_for_and_return(county: County, note: Path) -> None:
    mid = _send(county, note)
    for address in (ZFB, FGJ):
        Receiver(county.context(address)).document(outgoing(county.context(XXZX), mid).body)

    inbox = json.loads(run("inbox", "--home", county.homes[ZFB], "--json").output)
    item = next(i for i in inbox if i["message_id"] == mid)
    assert (item["state"], item["sender"], item["doc_number"]) == ("delivered", XXZX, "阳信发〔2011〕20号")
    assert item["received_at"].endswith("+08:00")
    assert (Path(item["path"]) / "通知.txt").read_bytes() == note.read_bytes()
    assert "待签收" in run("inbox", "--home", county.homes[ZFB]).output  # the glossary's inbox word

    signed = run("sign-for", "--home", county.homes[ZFB], mid)
    assert signed.exit_code == 0 and "已签收" in signed.output
    refused(run("sign-for", "--home", county.homes[ZFB], mid), "already_done")
    waiting = json.loads(run("inbox", "--home", county.homes[ZFB], "--state", "delivered", "--json").output)
    assert mid not in [i["message_id"] for i in waiting]

    returned = run("return", "--home", county.homes[FGJ], mid, "--reason", "非本单位职责范围")
    assert returned.exit_code == 0 and "已退回" in returned.output
    item = next(i for i in json.loads(run("inbox", "--home", county.homes[FGJ], "--json").output)
                if i["message_id"] == mid)
    assert (item["state"], item["reason"]) == ("returned", "非本单位职责范围")
    refused(run("return", "--home", county.homes[ZFB], mid, "--reason", " "), "receipt_invalid")
    refused(run("sign-for", "--home", county.homes[ZFB], "00000000-0000-4000-8000-000000000000"), "unknown_document")


def test_documents_awaiting_trust_are_listed_with_their_state_and_the_senders_name_if_known(
        county: County, tmp_path: Path) -> None:
    """Kept until the sender's CA reaches this terminal: listed (with all states, or alone),
    never with `--state delivered` (what scripts sign for); named from our directory."""
    swb = "qingyuan.swb"
    _, units = foreign_units(tmp_path, {swb: "中共清远市委办公室", XXZX: "阳山县信息中心"})
    me = county.context(ZFB)
    city, city_body = letter(units[swb], me, title="关于联网后公文交换的通知", doc_number="清办发〔2011〕9号",
                             files={"正文.txt": "请遵照执行。".encode()}, priority="特急")
    # A county unit whose certificate comes from a CA not trusted here yet: our directory knows its name.
    ours, ours_body = letter(units[XXZX], me, title="关于启用新证书的通知", doc_number="阳信发〔2011〕30号",
                             files={"正文.txt": "新证书".encode()})
    receiver = Receiver(me)
    receiver.document(city_body)
    receiver.document(ours_body)

    listed = json.loads(run("inbox", "--home", county.homes[ZFB], "--json").output)
    waiting = {i["message_id"]: i for i in listed if i["state"] == "awaiting_trust"}
    assert set(waiting) == {city, ours}
    assert [i["state"] for i in listed[:2]] == ["awaiting_trust"] * 2  # first of all
    item = waiting[city]
    assert (item["sender"], item["sender_name"], item["title"], item["doc_number"], item["priority"]) == (
        swb, "", "关于联网后公文交换的通知", "清办发〔2011〕9号", "特急")
    assert item["wait_until"] > item["received_at"] and item["path"] == ""
    assert (waiting[ours]["sender"], waiting[ours]["sender_name"]) == (XXZX, "阳山县信息中心")
    only = json.loads(run("inbox", "--home", county.homes[ZFB], "--state", "awaiting_trust", "--json").output)
    assert {i["message_id"] for i in only} == {city, ours}
    pending = json.loads(run("inbox", "--home", county.homes[ZFB], "--state", "delivered", "--json").output)
    assert not {city, ours} & {i["message_id"] for i in pending}
    text = run("inbox", "--home", county.homes[ZFB]).output
    city_line = next(line for line in text.splitlines() if line.startswith(city))
    assert "等待信任" in city_line and f"来自 {swb}" in city_line and "尚未受信任" in city_line
    ours_line = next(line for line in text.splitlines() if line.startswith(ours))
    assert "来自 阳山县信息中心" in ours_line


def test_directory_lists_and_searches_what_the_agent_can_send_to(county: County) -> None:
    every = json.loads(run("directory", "--home", county.homes[XXZX], "--json").output)
    assert {ZFB, FGJ, XXZX} <= {u["address"] for u in every}
    found = run("directory", "--home", county.homes[XXZX], "zfb")
    assert found.exit_code == 0 and ZFB in found.output and FGJ not in found.output


def test_a_bare_or_unknown_network_address_is_refused_not_sent_on_paper(county: County, note: Path) -> None:
    line = refused(run("send", "--home", county.homes[XXZX], "--to", "zfb", "--title", "t", "--doc-number", "n", note),
                   "unknown_recipient")
    assert f"did you mean {ZFB}" in line
    refused(run("send", "--home", county.homes[XXZX], "--to", "qingyuan.yangshan.zfbb", "--title", "t",
                "--doc-number", "n", note), "unknown_recipient")  # a typo inside the county


def test_a_paper_route_is_warned_about_before_it_is_queued(county: County, note: Path) -> None:
    result = run("send", "--home", county.homes[XXZX], "--to", f"{ZFB},guangdong.shaoguan.zfb", "--title", "t",
                 "--doc-number", "n", note, "--json")
    assert result.exit_code == 0, result.output
    assert "paper route" in result.stderr and "guangdong.shaoguan.zfb" in result.stderr
    assert json.loads(result.stdout)["paper_route"] == ["guangdong.shaoguan.zfb"]


@pytest.mark.parametrize("args", [
    ("send", "--to", ZFB, "--title", "t", "--doc-number", "n", "NOTE"), ("inbox",), ("sent",), ("directory",),
    ("sign-for", "3f2a9c10"), ("return", "3f2a9c10", "--reason", "r"), ("recall", "3f2a9c10", "--reason", "r"),
    ("agent", "run"), ("agent", "token"), ("agent", "add-person", "NOTEDIR"),
    ("key", "passwd", "--new-passphrase-env", "NEW"), ("evidence", "opened", "3f2a9c10"),
], ids=lambda a: " ".join(a[:2]))
def test_the_hubs_home_given_to_an_agent_command_is_named_as_such(
        note: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    """No traceback: one line saying the folder is the hub's and which commands take it."""
    hub_home = tmp_path / "hub"
    hub_home.mkdir()
    HubConfig(home=hub_home, prefix="qingyuan.yangshan", name="阳山县电子公文交换中心", database_url="sqlite://",
              broker=BrokerConfig(url="amqp://x:y@127.0.0.1/v", vhost="v")).save()
    words = [str(note) if a == "NOTE" else str(note.parent) if a == "NOTEDIR" else a for a in args]
    at = 2 if words[0] in ("agent", "key", "evidence") else 1
    line = refused(run(*words[:at], "--home", hub_home, *words[at:]), "no_agent")
    assert "hub home (交换中心目录)" in line and "AGENTDIR" in line


@pytest.mark.parametrize("args", [("track", "3f2a9c10"), ("unit", "list"), ("documents",), ("audit", "verify"),
                                  ("hub", "report", "--from", "2026-01-01", "--to", "2026-01-31")],
                         ids=lambda a: " ".join(a[:2]))
def test_an_agent_home_given_to_a_hub_command_is_named_as_such(county: County, args: tuple[str, ...]) -> None:
    at = 2 if args[0] in ("unit", "audit", "hub") else 1
    line = refused(run(*args[:at], "--home", county.homes[XXZX], *args[at:]), "no_hub")
    assert "agent home (单位终端目录)" in line and "HUBDIR" in line
