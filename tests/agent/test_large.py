"""Large documents at the agent, driven with real envelopes and chunks and the agent's own
handler (no broker): chunks and envelope in any order and any number of times make one
document, one receipt, the file byte for byte; a chunk that does not belong is refused with
a named error; pieces of delivered or abandoned transfers are cleaned up."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pika
import pytest
from sqlalchemy import func, select

from docex.agent.context import AgentContext
from docex.agent.large import CHUNKS_DIR, clean_leftovers, queue_large
from docex.agent.receiving import Receiver
from docex.agent.sending import Draft
from docex.agent.store import Outgoing, OutgoingChunks, Quarantined, Received
from docex.broker import Delivery
from docex.protocols import messages
from docex.protocols.chunks import ChunkKey, sealed_chunks
from tests.agent.homes import County, build_county, outgoing
from tests.conftest import Pki

XXZX, ZFB = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb"
CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def county(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> County:
    return build_county(pki, tmp_path_factory.mktemp("county"))


def _queue(county: County, tmp_path: Path, size: int = 5 * CHUNK + 7) -> tuple[str, bytes, list[bytes], Path]:
    big = tmp_path / "扫描件.tif"
    big.write_bytes(os.urandom(size))
    sender = county.context(XXZX)
    mid = queue_large(sender, Draft(to=(ZFB,), title="大文件测试", doc_number="阳信发〔2011〕9号",
                                    files={"正文.txt": "详见附件。".encode()}), big, chunk_size=CHUNK)
    with sender.store.session() as s:
        key = ChunkKey.from_json(s.get(OutgoingChunks, mid).chunk_key)  # type: ignore[union-attr]
    with big.open("rb") as fh:
        bodies = [body for _, body in sealed_chunks(fh, key, mid)]
    return mid, outgoing(sender, mid).body, bodies, big


def _chunk(mid: str, index: object, body: bytes) -> Delivery:
    return Delivery(body=body, message_id=messages.chunk_key(mid, 0), user_id=None, redelivered=False, delivery_tag=1,
                    headers={messages.H_CHUNK_OF: mid, messages.H_CHUNK_INDEX: index},
                    properties=pika.BasicProperties(type=messages.CHUNK))


def _count(ctx: AgentContext, model: type, *where: object) -> int:
    with ctx.store.session() as s:
        return int(s.execute(select(func.count()).select_from(model).where(*where)).scalar_one())  # type: ignore[arg-type]


def test_the_sender_queues_the_envelope_and_owes_the_chunks(county: County, tmp_path: Path) -> None:
    mid, envelope, bodies, _ = _queue(county, tmp_path)
    sender = county.context(XXZX)
    with sender.store.session() as s:
        row = s.get(OutgoingChunks, mid)
        assert row is not None and (row.count, row.next_index, row.done_at) == (6, 0, None)
        digests = json.loads(row.digests)["digests"]
    assert digests == [hashlib.sha256(b).hexdigest() for b in bodies]
    assert _count(sender, Outgoing, Outgoing.message_id == mid) == 1 and len(envelope) < 64 * 1024


def test_chunks_and_envelope_in_any_order_make_one_document(county: County, tmp_path: Path) -> None:
    mid, envelope, bodies, big = _queue(county, tmp_path)
    me = county.context(ZFB)
    receiver = Receiver(me)
    for index in (4, 0, 0, 2):  # some chunks first, one twice
        receiver(_chunk(mid, index, bodies[index]))
    receiver.document(envelope)
    receiver.document(envelope)  # redelivered
    assert _count(me, Received, Received.message_id == mid) == 0  # still waiting for 1, 3, 5
    for index in (1, 3, 5, 5):
        receiver(_chunk(mid, index, bodies[index]))
    assert _count(me, Received, Received.message_id == mid) == 1
    folder = me.config.inbox / mid
    assert (folder / big.name).read_bytes() == big.read_bytes()
    assert {p.name for p in folder.iterdir()} == {big.name, f"{big.name}.p7s", "正文.txt", "manifest.json"}
    key = messages.receipt_key(mid, ZFB, "delivered")
    assert _count(me, Outgoing, Outgoing.message_id == key) == 1
    assert not (me.config.home / CHUNKS_DIR / mid).exists()
    receiver(_chunk(mid, 2, bodies[2]))  # after delivery: ignored, nothing kept
    assert not (me.config.home / CHUNKS_DIR / mid).exists()


@pytest.mark.parametrize("headers", [{messages.H_CHUNK_OF: "../../x", messages.H_CHUNK_INDEX: 0},
                                     {messages.H_CHUNK_OF: "0" * 36, messages.H_CHUNK_INDEX: 0},
                                     {messages.H_CHUNK_INDEX: 1}])
def test_a_chunk_with_a_hostile_address_is_dropped_before_any_path(county: County, headers: dict[str, object]) -> None:
    me = county.context(ZFB)
    Receiver(me)(Delivery(body=b"x", message_id="x", headers=headers, user_id=None, redelivered=False,
                          delivery_tag=1, properties=pika.BasicProperties(type=messages.CHUNK)))
    root = me.config.home / CHUNKS_DIR
    assert not root.exists() or all(p.name != ".." and len(p.name) == 36 for p in root.iterdir())


def test_a_chunk_that_is_not_the_signed_one_refuses_the_document(county: County, tmp_path: Path) -> None:
    mid, envelope, bodies, _ = _queue(county, tmp_path, size=2 * CHUNK)
    me = county.context(ZFB)
    receiver = Receiver(me)
    receiver.document(envelope)
    receiver(_chunk(mid, 0, bodies[1]))  # another position's chunk under index 0
    receiver(_chunk(mid, 1, bodies[1]))
    assert _count(me, Received, Received.message_id == mid) == 0
    with me.store.session() as s:
        codes = s.execute(select(Quarantined.code).where(Quarantined.message_id == mid)).scalars().all()
    assert codes == ["chunk_invalid"]
    refused = messages.receipt_key(mid, ZFB, "refused")
    with me.store.session() as s:
        assert s.execute(select(Outgoing.id).where(Outgoing.message_id.like(f"{refused}%"))).first() is not None
    assert not (me.config.home / CHUNKS_DIR / mid).exists() and not (me.config.inbox / mid).exists()


def test_pieces_of_delivered_and_abandoned_transfers_are_removed(county: County, tmp_path: Path) -> None:
    me = county.context(ZFB)
    root = me.config.home / CHUNKS_DIR
    mid, _, bodies, _ = _queue(county, tmp_path)
    Receiver(me)(_chunk(mid, 0, bodies[0]))  # a transfer that stops here
    fresh, _, fresh_bodies, _ = _queue(county, tmp_path)
    Receiver(me)(_chunk(fresh, 0, fresh_bodies[0]))
    long_ago = time.time() - 31 * 86400
    for path in (root / mid).iterdir():
        os.utime(path, (long_ago, long_ago))
    assert clean_leftovers(me) == 1
    assert not (root / mid).exists() and (root / fresh).exists()
