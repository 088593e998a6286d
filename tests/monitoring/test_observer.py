"""The Observer seam and its Prometheus implementation (pure logic: scrape the registry)."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from docex.monitoring.labels import DELIVERY_STATES, OTHER, BoundedLabel
from docex.monitoring.observer import (
    HOOKS,
    MultiObserver,
    NullObserver,
    Observer,
    RecordingObserver,
)
from docex.monitoring.prometheus import PrometheusObserver
from docex.monitoring.scrape import Samples


def scrape(registry: CollectorRegistry) -> Samples:
    return Samples.parse(generate_latest(registry).decode())


def test_every_implementation_is_an_observer_with_the_same_hooks() -> None:
    protocol_hooks = {n for n in vars(Observer) if not n.startswith("_")}
    assert set(HOOKS) == protocol_hooks
    for obs in (
        NullObserver(),
        MultiObserver(),
        RecordingObserver(),
        PrometheusObserver(CollectorRegistry()),
    ):
        assert isinstance(obs, Observer)
        for hook in HOOKS:
            assert callable(getattr(obs, hook))


def test_multi_observer_fans_out_and_survives_a_failing_member(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(NullObserver):
        def receipt(self, event: str) -> None:
            raise RuntimeError("boom")

    first, last = RecordingObserver(), RecordingObserver()
    multi = MultiObserver(first, Broken(), last)
    with caplog.at_level(logging.ERROR):
        multi.receipt("delivered")
        multi.document_accepted("qingyuan.yangshan.xwb", 3, 100, 0.1)
    for rec in (first, last):
        assert rec.calls == [
            ("receipt", ("delivered",)),
            ("document_accepted", ("qingyuan.yangshan.xwb", 3, 100, 0.1)),
        ]
    assert "Broken" in caplog.text and "receipt" in caplog.text


def test_recording_observer_counts() -> None:
    rec = RecordingObserver()
    rec.delivery_state("routed")
    rec.delivery_state("routed")
    rec.delivery_state("delivered")
    assert rec.count("delivery_state") == 3
    assert rec.count("delivery_state", "routed") == 2
    assert rec.counts()["delivery_state"] == 3


def test_hub_hooks_become_counters_and_histograms() -> None:
    registry = CollectorRegistry()
    obs = PrometheusObserver(registry)
    s = scrape(registry)
    for state in DELIVERY_STATES:  # visible at zero before anything happens
        assert s.value("docex_delivery_transitions_total", state=state) == 0
    assert s.value("docex_documents_accepted_total") == 0

    obs.document_accepted("qingyuan.yangshan.xwb", 3, 5000, 0.02)
    obs.document_accepted("qingyuan.yangshan.zfb", 2, 7000, 0.04)
    obs.document_rejected("duplicate")
    obs.document_rejected("duplicate")
    obs.document_rejected("signature_invalid")
    for _ in range(5):
        obs.delivery_state("routed")
    obs.delivery_state("signed_for")
    obs.receipt("delivered")
    obs.receipt("signed-for")
    obs.receipt("signed_for")
    obs.delivered(2.5)
    obs.delivered(7200.0)
    obs.signed_for(1800.0)

    s = scrape(registry)
    assert s.value("docex_documents_accepted_total") == 2
    assert s.value("docex_documents_recipients_total") == 5
    assert s.value("docex_documents_rejected_total", code="duplicate") == 2
    assert s.value("docex_documents_rejected_total", code="signature_invalid") == 1
    assert s.value("docex_delivery_transitions_total", state="routed") == 5
    assert s.value("docex_delivery_transitions_total", state="signed_for") == 1
    assert s.value("docex_receipts_total", event="delivered") == 1
    assert s.value("docex_receipts_total", event="signed_for") == 2  # wire and store spelling
    assert s.value("docex_intake_seconds_count") == 2
    assert s.value("docex_intake_seconds_sum") == pytest.approx(0.06)
    assert s.value("docex_document_bytes_sum") == 12000
    assert s.value("docex_delivery_seconds_count") == 2
    assert s.value("docex_delivery_seconds_bucket", le="5.0") == 1
    assert s.value("docex_delivery_seconds_bucket", le="+Inf") == 2
    assert s.value("docex_sign_for_seconds_bucket", le="1800.0") == 1
    # nothing is labelled by sender or message
    assert all("sender" not in x.labels for x in s.samples)


def test_agent_and_link_hooks() -> None:
    registry = CollectorRegistry()
    obs = PrometheusObserver(registry, links=["parent"])
    obs.agent_sent()
    obs.agent_received()
    obs.agent_received()
    obs.agent_quarantined("seal_invalid")
    obs.link_forwarded("parent", "out", 1000)
    obs.link_forwarded("parent", "out", 500)
    obs.link_forwarded("parent", "in", 10)
    obs.link_forwarded("somewhere", "sideways", 10)  # unknown link and direction
    obs.link_error("parent", "connection_lost")
    s = scrape(registry)
    assert s.value("docex_agent_sent_total") == 1
    assert s.value("docex_agent_received_total") == 2
    assert s.value("docex_agent_quarantined_total", code="seal_invalid") == 1
    assert s.value("docex_link_documents_total", link="parent", direction="out") == 2
    assert s.value("docex_link_bytes_total", link="parent", direction="out") == 1500
    assert s.value("docex_link_bytes_total", link="parent", direction="in") == 10
    assert s.value("docex_link_documents_total", link=OTHER, direction=OTHER) == 1
    assert s.value("docex_link_errors_total", link="parent", code="connection_lost") == 1


def test_label_values_stay_bounded() -> None:
    registry = CollectorRegistry()
    obs = PrometheusObserver(registry)
    for i in range(500):  # a bug feeding message ids into the code label
        obs.document_rejected(f"msg-{i:04d}")
    obs.document_rejected("签名无效 with spaces")  # prose is never a label value
    obs.delivery_state("teleported")
    s = scrape(registry)
    codes = {x.labels["code"] for x in s.find("docex_documents_rejected_total")}
    assert len(codes) <= 65 and OTHER in codes
    assert s.value("docex_documents_rejected_total") == 501
    assert s.value("docex_delivery_transitions_total", state=OTHER) == 1


def test_bounded_label_with_a_fixed_set() -> None:
    label = BoundedLabel("state", allowed=("a", "b"))
    assert [label("a"), label("b"), label("c")] == ["a", "b", OTHER]
    capped = BoundedLabel("code", limit=2)
    assert [capped("x"), capped("y"), capped("z"), capped("x")] == ["x", "y", OTHER, "x"]
