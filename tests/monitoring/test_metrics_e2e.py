"""The metrics on a running county: the hub (two intake processes, each with its own
/metrics) and three unit agents as real processes, one unit registered but off line, a
link to the city with no bridge behind it. Documents are sent, signed for and returned
with the agent library; every /metrics is scraped over HTTP and its values are checked
against what the test did."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from docex.broker import ConfirmedPublisher, PublishItem, connect
from docex.broker.topology import INGRESS_EXCHANGE, INGRESS_ROUTING_KEY, link_queue, unit_queue
from docex.hub import broker as hub_broker
from docex.monitoring.scrape import Samples, scrape
from docex.protocols import messages
from tests.monitoring.localhub import PREFIX, County, eventually, hub_total, running_county

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

ZFB, XWB, FGJ, JYJ = (f"{PREFIX}.{u}" for u in ("zfb", "xwb", "fgj", "jyj"))
CITY = "qingyuan.swb"  # beyond the county: over the parent link


@pytest.fixture(scope="module")
def county(tmp_path_factory: pytest.TempPathFactory) -> Iterator[County]:
    root = tmp_path_factory.mktemp("metrics-e2e")
    with running_county(root, ("zfb", "xwb", "fgj", "jyj"), agents=("zfb", "xwb", "fgj"),
                        workers=2, parent_link=True) as c:
        yield c


def ready_messages(county: County, queue: str) -> int:
    """Exactly what waits in `queue` now (AMQP passive declare; the management API's
    statistics, which the gauges use, lag a few seconds)."""
    conn = connect(hub_broker.settings(county.net.config), "docex-test-depth")
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


def publish_garbage(county: County, sender: str) -> None:
    """A unit's terminal publishing something that is not an envelope."""
    ctx = county.agent(sender)
    from docex.agent.service import broker_settings

    publisher = ConfirmedPublisher.open(broker_settings(ctx), connection_name="docex-test-garbage")
    try:
        publisher.publish_many([PublishItem(INGRESS_EXCHANGE, INGRESS_ROUTING_KEY, b"not an envelope",
                                            "garbage-0001", user_id=ctx.broker_user, type=messages.DOCUMENT)])
    finally:
        publisher.close()


def test_metrics_follow_documents_receipts_and_levels(county: County) -> None:
    # Before anything is sent: every endpoint answers, the gauges know the county.
    hub_main, hub_worker = county.scrape_hub()
    for samples in (hub_main, hub_worker):
        assert samples.value("docex_build_info", service="hub") == 1
        assert samples.value("process_resident_memory_bytes") > 0
    assert "docex_deliveries" not in hub_worker.names()  # levels come from the main process only
    for address, url in county.agent_metrics.items():
        s = scrape(url)
        assert s.value("docex_build_info", service="agent") == 1, address
        assert s.value("docex_agent_sent_total") == 0

    def units_known() -> None:
        s = scrape(county.hub_metrics[0])
        assert s.value("docex_units", state="total") == 4
        assert s.value("docex_units", state="online") == 3  # jyj's terminal is off
        assert {x.labels["unit"] for x in s.find("docex_unit_last_seen_seconds")} == {ZFB, XWB, FGJ}

    eventually(units_known)
    # The directory reached every queue at start; what the test sends comes on top.
    jyj_before = eventually(lambda: _at_least_one(ready_messages(county, unit_queue(JYJ))))
    parent_before = eventually(lambda: _at_least_one(ready_messages(county, link_queue("parent"))))

    # 县府办 sends two documents; one recipient is off line and one is in the city.
    d1 = county.send(ZFB, (XWB, FGJ), "关于做好2011年国庆节期间值班工作的通知", "阳府办〔2011〕45号", priority="加急")
    d2 = county.send(ZFB, (XWB, JYJ), "关于开展电子公文交换系统试运行的通知", "阳府办〔2011〕46号", cc=(CITY,))
    publish_garbage(county, ZFB)
    county.wait_states(d1, {XWB: "delivered", FGJ: "delivered"})
    county.wait_states(d2, {XWB: "delivered", JYJ: "routed", CITY: "routed"})

    def inbox_waiting() -> None:
        s = scrape(county.agent_metrics[XWB])
        assert s.value("docex_agent_received_total") == 2
        assert s.value("docex_inbox_unsigned") == 2

    eventually(inbox_waiting)

    # Staff sign for and return (签收, 退回).
    county.sign_for(XWB, d1)
    county.sign_for(XWB, d2)
    county.return_(FGJ, d1, "非本单位职责，请转县应急办")
    county.wait_states(d1, {XWB: "signed_for", FGJ: "returned"})
    county.wait_states(d2, {XWB: "signed_for"})

    def hub_counters() -> None:
        s = county.scrape_hub()
        assert hub_total(s, "docex_documents_accepted_total") == 2
        assert hub_total(s, "docex_documents_recipients_total") == 5
        assert hub_total(s, "docex_intake_seconds_count") == 2
        assert hub_total(s, "docex_documents_rejected_total") == 1
        assert hub_total(s, "docex_documents_rejected_total", code="malformed_envelope") == 1
        assert hub_total(s, "docex_receipts_total", event="delivered") == 3
        assert hub_total(s, "docex_receipts_total", event="signed_for") == 2
        assert hub_total(s, "docex_receipts_total", event="returned") == 1
        assert hub_total(s, "docex_delivery_transitions_total", state="routed") == 5
        assert hub_total(s, "docex_delivery_transitions_total", state="delivered") == 3
        assert hub_total(s, "docex_delivery_transitions_total", state="signed_for") == 2
        assert hub_total(s, "docex_delivery_transitions_total", state="returned") == 1
        assert hub_total(s, "docex_delivery_seconds_count") == 3  # send -> delivered, per recipient
        assert hub_total(s, "docex_sign_for_seconds_count") == 2  # delivered -> signed for

    eventually(hub_counters)

    def hub_levels() -> Samples:
        s = scrape(county.hub_metrics[0])
        assert {st: s.value("docex_deliveries", state=st) for st in
                ("accepted", "routed", "delivered", "signed_for", "returned", "rejected")} == {
            "accepted": 0, "routed": 2, "delivered": 0, "signed_for": 2, "returned": 1, "rejected": 0}
        assert s.value("docex_queue_messages", queue=unit_queue(JYJ)) == jyj_before + 1
        assert s.value("docex_queue_messages", queue=unit_queue(XWB)) == 0
        assert s.value("docex_oldest_undelivered_seconds", unit=JYJ) > 0
        assert s.value("docex_oldest_undelivered_seconds", unit="parent") > 0
        assert XWB not in {x.labels["unit"] for x in s.find("docex_oldest_undelivered_seconds")}
        assert s.value("docex_link_up", link="parent") == 0  # no bridge connected
        assert s.value("docex_link_backlog", link="parent", direction="out") == parent_before + 1
        assert s.value("docex_units", state="online") == 3
        assert s.value("docex_audit_chain_ok") == 1
        assert s.value("docex_deliveries_overdue") == 0
        assert s.value("docex_dead_letters") == 0
        assert s.value("docex_outbox_pending") == 0
        assert s.value("docex_status_up") == 1
        return s

    eventually(hub_levels)
    assert ready_messages(county, unit_queue(JYJ)) == jyj_before + 1

    def agent_values() -> None:
        sender, xwb, fgj = (scrape(county.agent_metrics[a]) for a in (ZFB, XWB, FGJ))
        assert sender.value("docex_agent_sent_total") == 2  # the garbage did not come from its outbox
        assert sender.value("docex_agent_received_total") == 0
        assert sender.value("docex_outbox_pending") == 0
        assert xwb.value("docex_agent_received_total") == 2
        assert xwb.value("docex_inbox_unsigned") == 0
        assert fgj.value("docex_agent_received_total") == 1
        assert fgj.value("docex_inbox_unsigned") == 0
        for s in (sender, xwb, fgj):
            assert s.value("docex_agent_quarantined_total", 0.0) == 0
            assert s.value("docex_outbox_pending") == 0  # receipts went out

    eventually(agent_values)

    # The read API's overview says the same as the gauges, link backlog included.
    def overview() -> None:
        o = county.api("/api/overview")
        assert o["documents_today"] == 2
        assert o["pending_sign_for"] == 2 and o["overdue"] == 0
        assert o["units_total"] == 4 and o["units_offline"] == 1
        assert o["links"] == [{"name": "parent", "state": "down", "backlog": parent_before + 1}]

    eventually(overview)


def _at_least_one(n: int) -> int:
    assert n >= 1
    return n
