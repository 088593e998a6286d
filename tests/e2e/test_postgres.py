"""The same exchange with the hub on PostgreSQL (a database of this module's own) and two
hub processes competing for the ingress queue: documents arrive intact with receipts,
refusals keep their codes, and a SIGKILL of the hub mid-stream loses and duplicates
nothing while the two processes together handle each document once."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from docex.agent.actions import return_document, sign_for
from docex.hub.db import is_postgres
from tests.cli.runner import run
from tests.e2e import test_faults as faults
from tests.e2e.conftest import NetworkFactory
from tests.e2e.support import SENDER, Network, wait_until
from tests.e2e.test_refusals import assert_refused
from tests.protocols import forge

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

XWB, ZFB, JW = "qingyuan.yangshan.xwb", "qingyuan.yangshan.zfb", "qingyuan.yangshan.jw"


@pytest.fixture(scope="module")
def county(network: NetworkFactory, pg_url: str) -> Iterator[Network]:
    net = network(4, database_url=pg_url)
    assert is_postgres(net.db.engine)
    net.start_hub(workers=2)
    net.start_agents()
    yield net


def test_document_to_several_arrives_intact_and_receipts_come_back(county: Network) -> None:
    mid, files = county.send(SENDER, [XWB, ZFB], [JW], doc_number="阳信发〔2011〕31号")
    county.wait_hub(mid, "delivered", [XWB, ZFB, JW])
    for address in (XWB, ZFB, JW):
        got = county.inbox_files(address, mid)
        assert got["正文.txt"] == files["正文.txt"] and got["附件1.bin"] == files["附件1.bin"]
    county.wait_sent(SENDER, mid, "delivered", [XWB, ZFB, JW])

    sign_for(county.agent(XWB), mid)
    sign_for(county.agent(ZFB), mid)
    return_document(county.agent(JW), mid, "非本单位职责范围")
    wait_until(lambda: county.hub_states(mid) == {XWB: "signed_for", ZFB: "signed_for", JW: "returned"}, 60,
               "sign-for and return recorded on PostgreSQL")
    wait_until(lambda: {a: r.state for a, r in county.sent(SENDER, mid).items()}
               == {XWB: "signed_for", ZFB: "signed_for", JW: "returned"}, 60, "the sender's view")
    detail = json.loads(run("track", "--home", county.hub_home, mid, "--json").output)
    assert {r["address"]: r["reason"] for r in detail["recipients"]}[JW] == "非本单位职责范围"


def test_refusals_keep_their_codes_on_postgres(county: Network) -> None:
    mid, _ = county.send(SENDER, [ZFB])
    county.wait_hub(mid, "delivered", [ZFB])
    _, replay = county.pack(SENDER, [ZFB], message_id=mid)
    county.queue_raw(SENDER, mid, replay, [ZFB], key=f"{mid}|replay", record=False)
    assert_refused(county, mid, "duplicate", replay, recorded=False)

    files = {"密件.txt": "秘密".encode()}
    m = forge.manifest(SENDER, [ZFB], files, classification="秘密")
    body = forge.wrap(forge.package(m, files), m, county.agent(SENDER).creds, [county.enc_cert(ZFB)])
    county.queue_raw(SENDER, m.message_id, body, [ZFB])
    assert_refused(county, m.message_id, "classified", body)


@pytest.mark.slow
def test_two_hub_processes_killed_mid_stream_handle_each_document_once(county: Network) -> None:
    with county.management() as mgmt:
        wait_until(lambda: (q := mgmt.get_queue(county.config.broker.vhost, "hub.ingress")) is not None
                   and q.consumers >= 2, 60, "both hub processes consuming the ingress")
    ids = faults.queue_stream(county, 60, "PostgreSQL")
    total = len(ids) * len(faults.RECIPIENTS)
    wait_until(lambda: county.documents() >= 10, 120, "the hub accepting documents")
    county.kill("hub")  # the whole process group: the service and its worker process
    assert faults.delivered(county, ids) < total
    county.start_hub(workers=2)
    faults.assert_exactly_once(county, ids)
    verified = run("audit", "verify", "--home", county.hub_home, "--json")
    assert verified.exit_code == 0 and json.loads(verified.output)["ok"] is True
