"""Sending: a document becomes an envelope in the local outbox, in one transaction with the
sender's own record of it; the agent refuses at source what the hub would refuse, and an
office system's sidecar becomes a draft."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from docex.agent.context import AgentContext
from docex.agent.receiving import Receiver
from docex.agent.sending import Draft, draft_from_sidecar, queue_document, release_held
from docex.agent.store import Held, Outgoing, Sent, SentRecipient
from docex.protocols import messages
from docex.protocols.envelope import open_envelope, read_header
from docex.protocols.errors import DocexError
from tests.agent.homes import County, build_county, outgoing
from tests.conftest import Pki

XXZX, ZFB, FGJ = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "qingyuan.yangshan.fgj"
FILES = {"正文.txt": "关于做好防汛工作的通知".encode(), "附件.bin": bytes(range(256))}


@pytest.fixture(scope="module")
def county(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> County:
    return build_county(pki, tmp_path_factory.mktemp("county"))


@pytest.fixture
def sender(county: County) -> AgentContext:
    return county.context(XXZX)


def _outbox_count(ctx: AgentContext) -> int:
    with ctx.store.session() as s:
        return int(s.execute(select(func.count()).select_from(Outgoing)).scalar_one())


def test_a_document_is_queued_with_the_senders_record(county: County, sender: AgentContext) -> None:
    mid = queue_document(sender, Draft(to=(ZFB,), cc=(FGJ,), title="防汛通知", doc_number="阳府办明电〔2011〕12号",
                                       priority="特急", files=FILES))
    row = outgoing(sender, mid)
    assert row.kind == messages.DOCUMENT and row.sent_at is None
    header = read_header(row.body)
    assert (header.sender, header.recipients, header.cc, header.priority) == (XXZX, (ZFB,), (FGJ,), "特急")
    with sender.store.session() as s:
        sent = s.get(Sent, mid)
        recips = {r.recipient: r.state for r in s.execute(select(SentRecipient).where(SentRecipient.message_id == mid)).scalars()}
    assert sent is not None and sent.state == "queued" and sent.doc_number == "阳府办明电〔2011〕12号"
    assert recips == {ZFB: "queued", FGJ: "queued"}
    for address in (ZFB, FGJ):  # both can open it, with every file intact
        opened = open_envelope(row.body, county.context(address).creds, sender.trust)
        assert opened.files == FILES and opened.manifest.title == "防汛通知"


def test_an_unknown_address_holds_the_document_until_the_hub_answers_paper_route(sender: AgentContext,
                                                                                 county: County) -> None:
    mid = queue_document(sender, Draft(to=(ZFB, "guangdong.swb"), title="报送材料", doc_number="1号", files=FILES))
    # Held unpacked, waiting for the directory; the hub is asked which addresses no hub knows.
    lookup = outgoing(sender, f"directory_request|{mid}")
    assert json.loads(lookup.body) == {"message_id": mid, "recipients": ["guangdong.swb"]}
    with sender.store.session() as s:
        assert s.get(Held, mid) is not None and s.get(Outgoing, mid) is None
        assert s.get(Sent, mid).state == "waiting_for_directory"  # type: ignore[union-attr]
    assert release_held(sender) == 0  # nothing new: it keeps waiting
    Receiver(sender).notice(county.notice(mid, "paper_route", "paper_route", ("guangdong.swb",)))
    assert release_held(sender) == 1
    body = outgoing(sender, mid).body
    # The paper-route address stays in the header (the hub records it); only ZFB can open it.
    assert read_header(body).recipients == (ZFB, "guangdong.swb")
    assert open_envelope(body, county.context(ZFB).creds, sender.trust).manifest.title == "报送材料"
    with sender.store.session() as s:
        states = {r.recipient: r.state for r in s.execute(select(SentRecipient).where(SentRecipient.message_id == mid)).scalars()}
    assert states == {ZFB: "queued", "guangdong.swb": "paper_route"}


def test_a_document_only_for_addresses_no_hub_knows_goes_to_the_hub_for_its_record(sender: AgentContext,
                                                                                    county: County) -> None:
    mid = queue_document(sender, Draft(to=("guangdong.swb",), title="报送材料", doc_number="2号", files=FILES))
    Receiver(sender).notice(county.notice(mid, "paper_route", "paper_route", ("guangdong.swb",)))
    assert release_held(sender) == 1
    assert read_header(outgoing(sender, mid).body).recipients == ("guangdong.swb",)
    with sender.store.session() as s:
        assert s.get(Held, mid) is None


@pytest.mark.parametrize(("draft", "code"), [
    (Draft(to=("qingyuan.yangshan.nosuch",), title="t", doc_number="n", files=FILES), "unknown_recipient"),
    (Draft(to=(ZFB,), title="t", doc_number="n", files=FILES, classification="秘密"), "classified"),
    (Draft(to=(ZFB,), title="t", doc_number="n", files=FILES, priority="紧急"), "bad_metadata"),
    (Draft(to=(ZFB,), title=" ", doc_number="n", files=FILES), "bad_metadata"),
    (Draft(to=("Not An Address",), title="t", doc_number="n", files=FILES), "bad_metadata"),
    (Draft(to=(ZFB,), title="t", doc_number="n", files={"../evil.txt": b"x"}), "unsafe_filename"),
])
def test_refused_at_source_with_its_code_and_nothing_queued(sender: AgentContext, draft: Draft, code: str) -> None:
    before = _outbox_count(sender)
    with pytest.raises(DocexError) as exc:
        queue_document(sender, draft)
    assert exc.value.code == code
    assert _outbox_count(sender) == before


def test_a_disabled_recipient_is_refused_at_source(county: County) -> None:
    county.states[FGJ] = "disabled"
    try:
        county.publish()
        with pytest.raises(DocexError) as exc:
            queue_document(county.context(XXZX), Draft(to=(FGJ,), title="t", doc_number="n", files=FILES))
        assert exc.value.code == "recipient_disabled"
    finally:
        county.states.pop(FGJ)
        county.publish()


def test_an_envelope_over_the_configured_limit_is_refused(sender: AgentContext) -> None:
    small = AgentContext(replace(sender.config, max_envelope_bytes=4096), sender.creds, sender.store)
    small.load_directories()
    with pytest.raises(DocexError) as exc:
        queue_document(small, Draft(to=(ZFB,), title="t", doc_number="n", files={"big.bin": bytes(8192)}))
    assert exc.value.code == "too_large"


def test_a_sidecar_becomes_a_draft(tmp_path: Path) -> None:
    (tmp_path / "通知.pdf").write_bytes(b"%PDF-1.4 test")
    sidecar = tmp_path / "通知.json"
    sidecar.write_text(json.dumps({"to": [ZFB], "cc": [FGJ], "title": "通知", "doc_number": "阳办发〔2011〕1号",
                                   "priority": "加急", "files": ["通知.pdf"]}, ensure_ascii=False), "utf-8")
    draft = draft_from_sidecar(sidecar)
    assert (draft.to, draft.cc, draft.priority) == ((ZFB,), (FGJ,), "加急")
    assert draft.files == {"通知.pdf": b"%PDF-1.4 test"}


@pytest.mark.parametrize(("meta", "code"), [
    ({"to": [ZFB], "files": []}, "bad_metadata"),  # no title
    ({"to": [ZFB], "title": "t", "files": ["missing.txt"]}, "bad_metadata"),
    ({"to": [ZFB], "title": "t", "files": ["../../etc/passwd"]}, "unsafe_filename"),
])
def test_a_bad_sidecar_is_a_named_error(tmp_path: Path, meta: dict[str, object], code: str) -> None:
    sidecar = tmp_path / "x.json"
    sidecar.write_text(json.dumps(meta), "utf-8")
    with pytest.raises(DocexError) as exc:
        draft_from_sidecar(sidecar)
    assert exc.value.code == code


def test_not_json_at_all_is_bad_metadata(tmp_path: Path) -> None:
    sidecar = tmp_path / "x.json"
    sidecar.write_text("{not json", "utf-8")
    with pytest.raises(DocexError) as exc:
        draft_from_sidecar(sidecar)
    assert exc.value.code == "bad_metadata"
