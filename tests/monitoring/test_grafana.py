"""The provisioned Grafana dashboard and its provisioning files."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.monitoring.conftest import MONITORING

GRAFANA = MONITORING / "grafana"
METRIC = re.compile(r"\b(?:docex|process|python)_[a-z0-9_]+\b")


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows
    return out


def test_dashboard_parses_and_covers_the_topics() -> None:
    (dashboard,) = dashboards()
    assert dashboard["uid"] == "docex-overview"
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    exprs = " ".join(t["expr"] for p in panels(dashboard) for t in p.get("targets", []))
    for metric in (
        "docex_documents_accepted_total",  # throughput
        "docex_delivery_seconds_bucket",  # latency
        "docex_deliveries",  # pending
        "docex_unit_last_seen_seconds",  # per-unit health
        "docex_link_backlog",  # link backlog
    ):
        assert metric in exprs, metric


def test_every_expr_uses_metrics_the_code_defines(defined_metric_names: set[str]) -> None:
    for dashboard in dashboards():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                used = set(METRIC.findall(target["expr"]))
                assert used, panel["title"]
                unknown = used - defined_metric_names
                assert not unknown, f"{panel['title']}: {sorted(unknown)}"


def test_provisioning_points_at_the_dashboards_and_datasource() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "docex.yml").read_text())[
        "providers"
    ]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards/docex"
    for dashboard in dashboards():
        for panel in panels(dashboard):
            uids = {panel["datasource"]["uid"]} | {
                t["datasource"]["uid"] for t in panel.get("targets", [])
            }
            assert uids == {source["uid"]}, panel["title"]
