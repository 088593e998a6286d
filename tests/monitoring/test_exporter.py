"""/metrics over HTTP: what a service's observer saw is what a scraper reads."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from docex.monitoring.exporter import (
    DEFAULT_PORTS,
    metrics_address,
    new_registry,
    serve_metrics,
    service_metrics,
)
from docex.monitoring.scrape import scrape
from tests.monitoring.conftest import full_snapshot


def test_served_metrics_match_what_happened() -> None:
    registry, observer = service_metrics("hub", status=full_snapshot)
    for _ in range(3):
        observer.document_accepted("qingyuan.yangshan.xwb", 2, 1000, 0.01)
    observer.document_rejected("classified")
    server = serve_metrics(registry, "127.0.0.1", 0)
    try:
        assert server.port > 0
        s = scrape(server.url)
        assert s.value("docex_documents_accepted_total") == 3
        assert s.value("docex_documents_rejected_total", code="classified") == 1
        assert s.value("docex_units", state="online") == 118
        assert s.value("docex_build_info", service="hub") == 1
        assert "process_cpu_seconds_total" in s.names()  # process resources
        assert "python_info" in s.names()
        assert not any(n.endswith("_created") for n in s.names())
        observer.document_accepted("qingyuan.yangshan.xwb", 2, 1000, 0.01)
        assert scrape(server.url).value("docex_documents_accepted_total") == 4
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url, timeout=2)


def test_registries_are_separate_per_service() -> None:
    hub_registry, hub = service_metrics("hub")
    agent_registry, agent = service_metrics("agent")
    agent.agent_sent()
    assert hub_registry.get_sample_value("docex_agent_sent_total") == 0
    assert agent_registry.get_sample_value("docex_agent_sent_total") == 1
    with pytest.raises(ValueError, match="unknown service"):
        new_registry("printer")


def test_metrics_address_flags_then_environment_then_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DOCEX_METRICS_HOST", raising=False)
    monkeypatch.delenv("DOCEX_METRICS_PORT", raising=False)
    assert metrics_address("agent") == ("127.0.0.1", DEFAULT_PORTS["agent"])
    monkeypatch.setenv("DOCEX_METRICS_HOST", "0.0.0.0")
    monkeypatch.setenv("DOCEX_METRICS_PORT", "9999")
    assert metrics_address("hub") == ("0.0.0.0", 9999)
    assert metrics_address("hub", host="127.0.0.1", port=0) == ("127.0.0.1", 0)
    monkeypatch.setenv("DOCEX_METRICS_PORT", "nine")
    with pytest.raises(ValueError, match="DOCEX_METRICS_PORT"):
        metrics_address("hub")
    with pytest.raises(ValueError, match="out of range"):
        metrics_address("hub", port=70000)
