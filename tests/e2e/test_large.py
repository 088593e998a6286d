"""Large documents end to end: a big file in chunks from agent to hub to two recipients,
each chunk checked by the hub against the signed header, the file rebuilt identically,
delivered exactly once. Mid-transfer the sending agent, the hub and a receiving agent are
each frozen (SIGSTOP, the gate) once k chunks have passed them, killed with SIGKILL and
restarted: the transfer resumes where it stopped."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from docex.agent.large import queue_large
from docex.agent.sending import Draft
from docex.agent.store import OutgoingChunks, Quarantined, Received
from docex.broker import ConfirmedPublisher, PublishItem
from docex.broker.topology import INGRESS_EXCHANGE, ingress_routing_key
from docex.hub.models import Chunk, Delivery, HeldChunk, Receipt, Rejection
from docex.protocols import messages
from docex.protocols.chunks import sealed_chunks
from docex.protocols.large import pack_large
from docex.protocols.manifest import Manifest, new_message_id
from tests.e2e.conftest import NetworkFactory
from tests.e2e.support import SENDER, Network, wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

RECIPIENTS = ["qingyuan.yangshan.zfb", "qingyuan.yangshan.xwb"]
VICTIM = RECIPIENTS[0]
SIZE = int(os.environ.get("DOCEX_LARGE_E2E_MB", "256")) * 1024 * 1024  # the gates below have room to close
CHUNK = 1024 * 1024


@pytest.fixture(scope="module")
def county(network: NetworkFactory) -> Iterator[Network]:
    net = network(3)
    net.start_hub()
    net.start_agents([SENDER, *RECIPIENTS])
    yield net
    # what the transfers left on disk (the hub's content store, the delivered copies)
    shutil.rmtree(net.hub_home / "content", ignore_errors=True)
    for address in RECIPIENTS:
        shutil.rmtree(net.home(address) / "inbox", ignore_errors=True)


def _big(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with path.open("wb") as fh:
        left = size
        while left:
            block = os.urandom(min(left, 4 * 1024 * 1024))
            h.update(block)
            fh.write(block)
            left -= len(block)
    return h.hexdigest()


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(4 * 1024 * 1024):
            h.update(block)
    return h.hexdigest()


def _sent_chunks(net: Network, mid: str) -> int:
    with net.agent(SENDER).store.session() as s:
        row = s.get(OutgoingChunks, mid)
        return row.next_index if row is not None else 0


def _hub_chunks(net: Network, mid: str) -> int:
    return net.count(Chunk, Chunk.message_id == mid, Chunk.state == "routed")


def _received_chunks(net: Network, address: str, mid: str) -> int:
    folder = net.home(address) / "chunks" / mid
    return len(list(folder.glob("*.chunk"))) if folder.is_dir() else 0


def _send(net: Network, big: Path, tag: str) -> str:
    draft = Draft(to=tuple(RECIPIENTS), title=f"关于{tag}的通知", doc_number="阳信发〔2011〕77号",
                  files={"正文.txt": f"{tag}：详见附件影像。".encode()})
    return queue_large(net.agent(SENDER), draft, big, chunk_size=CHUNK)


def _assert_delivered_once(net: Network, mid: str, name: str, sha: str) -> None:
    wait_until(lambda: net.hub_states(mid) == {r: "delivered" for r in RECIPIENTS}, 600, "delivered to both")
    for address in RECIPIENTS:
        folder = net.home(address) / "inbox" / mid
        assert _file_sha(folder / name) == sha, address
        assert (folder / f"{name}.p7s").exists() and (folder / "正文.txt").exists()
        with net.agent(address).store.session() as s:
            assert s.execute(select(func.count()).select_from(Received).where(Received.message_id == mid)).scalar_one() == 1
            assert s.execute(select(Quarantined.id)).first() is None
        # the pieces go once the document is recorded (the receipt may overtake their removal)
        pieces = net.home(address) / "chunks" / mid
        wait_until(lambda p=pieces: not p.exists(), 60, f"{address} removing the pieces")
    assert net.count(Receipt, Receipt.message_id == mid, Receipt.event == "delivered") == len(RECIPIENTS)
    assert net.count(Delivery, Delivery.message_id == mid) == len(RECIPIENTS)
    assert net.count(Rejection, Rejection.message_id == mid) == 0
    wait_until(lambda: {r.state for r in net.sent(SENDER, mid).values()} == {"delivered"}, 120, "receipts at the sender")


def test_a_large_document_reaches_every_recipient_identically(county: Network, tmp_path: Path) -> None:
    big = tmp_path / "卫星影像.tif"
    sha = _big(big, 8 * CHUNK + 12345)
    mid = _send(county, big, "大文件")
    _assert_delivered_once(county, mid, big.name, sha)
    assert _hub_chunks(county, mid) == 9
    big.unlink()


@pytest.mark.timeout(1200)
def test_kills_of_sender_hub_and_recipient_mid_transfer_resume_and_deliver_once(county: Network,
                                                                               tmp_path: Path) -> None:
    big = tmp_path / "档案扫描件.zip"
    sha = _big(big, SIZE)
    total = SIZE // CHUNK
    try:
        mid = _send(county, big, "断点续传")
        # 1. The sending agent is frozen after k chunks were confirmed, killed, restarted.
        wait_until(lambda: _sent_chunks(county, mid) >= 5, 300, "the sender publishing chunks", interval=0.02)
        county.pause(county.hosts[SENDER])
        stopped_at = _sent_chunks(county, mid)
        assert stopped_at < total
        county.kill(county.hosts[SENDER])
        county.start_agents([SENDER])
        # The gate for what follows: the sender frozen again part-way, so that no later step
        # can see the whole file go by before its kill lands.
        wait_until(lambda: _sent_chunks(county, mid) >= total // 2, 300, "the sender resuming", interval=0.02)
        county.pause(county.hosts[SENDER])
        assert stopped_at < _sent_chunks(county, mid) < total

        # 2. The hub, frozen after it passed on some chunks, killed, restarted.
        wait_until(lambda: _hub_chunks(county, mid) >= total // 4, 300, "the hub passing chunks on", interval=0.02)
        county.pause("hub")
        county.kill("hub")
        county.start_hub()

        # 3. A recipient, frozen with part of the chunks on its disk, killed, restarted.
        wait_until(lambda: _received_chunks(county, VICTIM, mid) >= total // 4, 300, f"{VICTIM} receiving",
                   interval=0.02)
        county.pause(county.hosts[VICTIM])
        county.kill(county.hosts[VICTIM])
        county.start_agents([VICTIM])
        county.resume(county.hosts[SENDER])

        _assert_delivered_once(county, mid, big.name, sha)
    finally:
        big.unlink(missing_ok=True)
        county.recover()


def test_chunks_ahead_of_their_envelope_wait_and_forged_ones_are_refused(county: Network, tmp_path: Path) -> None:
    """Chunks published before their envelope (a forged copy of chunk 0 first) are held,
    then checked when the envelope is accepted: the forged copy is dropped and audited, the
    true ones pass. After that, a forged chunk is refused at once (`chunk_invalid`)."""
    big = tmp_path / "附件.bin"
    sha = _big(big, 3 * CHUNK + 99)
    ctx = county.agent(SENDER)
    manifest = Manifest(message_id=new_message_id(), sender=SENDER, recipients=(VICTIM,), title="测试公文",
                        doc_number="阳测〔2011〕3号")
    mid = manifest.message_id
    packed = pack_large(manifest, {"正文.txt": "正文".encode()}, big, ctx.creds, [county.enc_cert(VICTIM)],
                        chunk_size=CHUNK)
    with big.open("rb") as fh:
        bodies = [body for _, body in sealed_chunks(fh, packed.key, mid)]

    def forged(body: bytes) -> bytes:
        changed = bytearray(body)
        changed[-20] ^= 1
        return bytes(changed)

    def item(index: int, body: bytes) -> PublishItem:
        return PublishItem(INGRESS_EXCHANGE, ingress_routing_key(messages.CHUNK), body, messages.chunk_key(mid, index),
                           headers={messages.H_CHUNK_OF: mid, messages.H_CHUNK_INDEX: index}, user_id=ctx.broker_user,
                           type=messages.CHUNK)

    with ConfirmedPublisher.open(county.unit_settings(SENDER)) as pub:
        pub.publish_many([item(0, forged(bodies[0])), *(item(i, b) for i, b in enumerate(bodies))])
    wait_until(lambda: county.count(HeldChunk, HeldChunk.message_id == mid) == 5, 60, "five copies held")
    county.queue_raw(SENDER, mid, packed.envelope, [VICTIM])
    county.wait_hub(mid, "delivered", [VICTIM], timeout=120)
    assert _file_sha(county.home(VICTIM) / "inbox" / mid / big.name) == sha
    assert county.count(HeldChunk, HeldChunk.message_id == mid) == 0
    assert [e.action for e in county.audit(mid, "chunk.reject")] == ["chunk.reject"]

    with ConfirmedPublisher.open(county.unit_settings(SENDER)) as pub:
        pub.publish_many([item(2, forged(bodies[2])), item(2, bodies[1])])  # changed; another index's
    wait_until(lambda: len(county.rejections(mid, "chunk_invalid")) == 2, 60, "forged chunks refused")
    assert county.received(VICTIM, mid) is not None
