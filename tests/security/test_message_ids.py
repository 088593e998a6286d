"""Issue 10, critical: a sender-chosen message id became a file path on the recipient
(`../../x`, `/abs/path`: files written outside the inbox; the quarantine overwrote an
existing file). Every parser now refuses a message id that is not a UUID
(`malformed_envelope`), and every path built from a peer's value is proved to lie inside
its folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from docex.agent.receiving import Receiver
from docex.agent.store import Outgoing, Quarantined, Received
from docex.pki.errors import PkiError
from docex.protocols.header import RoutingHeader
from docex.protocols.manifest import Manifest
from docex.protocols.notice import make_notice, verify_notice
from docex.protocols.receipt import make_receipt, verify_receipt
from docex.protocols.statement import sign_statement
from tests.agent.homes import County, build_county
from tests.conftest import Pki
from tests.security.hostile import envelope_with_id, tree

XXZX, ZFB = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb"
GOOD_ID = "6f1c2d3e-4b5a-4978-8a6b-5c4d3e2f1a0b"


def hostile_ids(tmp_path: Path) -> list[str]:
    return ["../../x", "../../../../authorized_keys", str(tmp_path / "abs" / "path"), "a/b", "..",
            GOOD_ID.upper(), "{" + GOOD_ID + "}", "urn:uuid:" + GOOD_ID, GOOD_ID + "\n", ""]


@pytest.fixture(scope="module")
def county(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> County:
    return build_county(pki, tmp_path_factory.mktemp("ids"))


def test_every_parser_refuses_a_message_id_that_is_not_a_uuid(county: County, pki: Pki, tmp_path: Path) -> None:
    sender = county.context(XXZX).creds
    hub = county.hub_dir
    from docex.pki.keys import load_certificate

    hub_cert = load_certificate(hub / "server.crt")
    for bad in hostile_ids(tmp_path):
        header = json.dumps({"message_id": bad, "sender": XXZX, "recipients": [ZFB], "priority": "平急",
                             "size": 1, "created_at": "2011-08-25T01:00:00+00:00", "protocol_version": "1"})
        with pytest.raises(PkiError) as exc:
            RoutingHeader.from_json(header.encode())
        assert exc.value.code == "malformed_envelope", bad
        manifest = json.dumps({"message_id": bad, "sender": XXZX, "recipients": [ZFB], "title": "t",
                               "created_at": "2011-08-25T01:00:00+00:00"})
        with pytest.raises(PkiError) as exc:
            Manifest.from_json(manifest.encode())
        assert exc.value.code == "malformed_envelope", bad
        receipt = {"message_id": bad, "recipient": XXZX, "event": "delivered", "envelope_sha256": "0" * 64,
                   "at": "2011-08-25T01:00:00+00:00"}
        with pytest.raises(PkiError) as exc:
            verify_receipt(sign_statement("receipt", receipt, sender.sign_cert, sender.sign_key), pki.trust())
        assert exc.value.code == "malformed_envelope", bad
        with pytest.raises(PkiError):  # nobody can even sign a receipt for such an id
            make_receipt(message_id=bad, recipient=XXZX, event="delivered", envelope_sha256="0" * 64,
                         cert=sender.sign_cert, key=sender.sign_key)
        if bad:  # a notice may name no document (a refusal of unparseable bytes)
            notice = {"message_id": bad, "event": "rejected", "code": "duplicate", "message": "m",
                      "recipients": [], "hub": "qingyuan.yangshan", "at": "2011-08-25T01:00:00+00:00"}
            with pytest.raises(PkiError) as exc:
                verify_notice(sign_statement("notice", notice, hub_cert, county.hub_key()), pki.trust())
            assert exc.value.code == "malformed_envelope", bad
            with pytest.raises(PkiError):
                make_notice(message_id=bad, event="rejected", code="duplicate", message="m", recipients=(),
                            hub="qingyuan.yangshan", cert=hub_cert, key=county.hub_key())


def test_a_path_like_message_id_is_quarantined_and_nothing_is_written_outside(county: County, tmp_path: Path) -> None:
    me = county.context(ZFB)
    sender = county.context(XXZX).creds
    root = county.root.parent  # `../../x` from the inbox lands here
    before = tree(county.root)
    escapes = [me.config.inbox / "../../x", me.config.inbox / "../../../../authorized_keys", tmp_path / "abs"]
    for bad in ["../../x", "../../../../authorized_keys", str(tmp_path / "abs" / "path")]:
        body = envelope_with_id(sender, me, bad)
        Receiver(me).document(body)
        with me.store.session() as s:
            row = s.execute(select(Quarantined).order_by(Quarantined.id.desc())).scalars().first()
            assert s.execute(select(func.count()).select_from(Received)).scalar_one() == 0
            refused = s.execute(select(Outgoing).where(Outgoing.message_id.like(f"{bad}%"))).scalars().all()
        assert row is not None and row.code == "malformed_envelope" and row.message_id == ""
        assert refused == []  # no receipt names the hostile id
        assert Path(row.path).resolve().parent == me.config.quarantine.resolve()
        assert Path(row.path).read_bytes() == body
    for path in escapes:
        assert not path.resolve().exists(), path
    assert not (root / "x").exists()
    after = tree(county.root)
    new = set(after) - set(before)
    assert new and all(n.startswith(f"{ZFB}/quarantine/") or n.startswith(f"{ZFB}/agent.db") for n in new), new
    assert {k: v for k, v in after.items() if k in before and "agent.db" not in k} == {
        k: v for k, v in before.items() if "agent.db" not in k}


def test_quarantine_never_overwrites_an_existing_file(county: County) -> None:
    me = county.context(ZFB)
    folder = me.config.quarantine
    folder.mkdir(exist_ok=True)
    body = b"\x30\x82 not an envelope, twice the same digest"
    import hashlib

    digest = hashlib.sha256(body).hexdigest()
    precious = {}
    for name in (f"{digest}.env", f"{digest}.json", f"unknown-{digest[:16]}.env", f"unknown-{digest[:16]}.json"):
        (folder / name).write_bytes(b"precious " + name.encode())
        precious[name] = (folder / name).read_bytes()
    Receiver(me).document(body)
    for name, data in precious.items():
        assert (folder / name).read_bytes() == data, name
    with me.store.session() as s:
        row = s.execute(select(Quarantined).where(Quarantined.digest == digest)).scalar_one()
    assert Path(row.path).read_bytes() == body and Path(row.path).name not in precious
    meta = json.loads(Path(row.path).with_suffix(".json").read_text("utf-8"))
    assert meta["code"] == "malformed_envelope"


def test_a_genuine_document_still_arrives(county: County) -> None:
    """The checks cost nothing to an honest sender (a UUID id, as every agent makes)."""
    me = county.context(ZFB)
    sender = county.context(XXZX).creds
    Receiver(me).document(envelope_with_id(sender, me, GOOD_ID))
    with me.store.session() as s:
        assert s.get(Received, GOOD_ID) is not None
    assert (me.config.inbox / GOOD_ID / "正文.txt").exists()


def test_a_snapshot_naming_a_path_like_address_is_refused(county: County) -> None:
    from docex.protocols.directory import UnitEntry

    me = county.context(ZFB)
    bad = UnitEntry(address="qingyuan.yangshan.../../x", name="伪造单位")
    with pytest.raises(PkiError) as exc:
        me.accept_directory(county.snapshot(version=50, extra=(bad,)))
    assert exc.value.code == "directory_untrusted"
    assert me.directory_version() < 50


def test_inside_proves_the_path_stays_in_its_folder(tmp_path: Path) -> None:
    from docex.protocols.safepath import inside

    folder = tmp_path / "inbox"
    folder.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (folder / "link").symlink_to(tmp_path / "elsewhere")
    assert inside(folder, GOOD_ID) == (folder / GOOD_ID).resolve()
    for parts in (("../x",), ("..",), (".",), (str(tmp_path / "abs"),), ("a", "../../x"), ("link", "f"), ("a\x00b",)):
        with pytest.raises(PkiError) as exc:
            inside(folder, *parts)
        assert exc.value.code == "unsafe_filename", parts
