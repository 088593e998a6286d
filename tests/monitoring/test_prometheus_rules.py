"""Prometheus scrape config, alert rules and rule unit tests, checked by promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring.conftest import MONITORING

PROM = MONITORING / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: apt-get install prometheus (scripts/setup-machine.sh does)",
)

# Identifiers that look like metric names of ours or of the process collector.
METRIC = re.compile(r"\b(?:(?:docex|process|python)_[a-z0-9_]+|up(?=\{))\b")

REQUIRED_ALERTS = {
    "DocexUnitOffline",
    "DocexDeliveriesOverdue",
    "DocexLinkDown",
    "DocexLinkBacklogGrowing",
    "DocexCertificatesExpiring",
    "DocexDeadLetters",
    "DocexIntakeRejectionsSpiking",
    "DocexAuditChainBroken",
}


def promtool(*args: str, cwd: Path = PROM) -> str:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def rules() -> list[dict[str, Any]]:
    docs = [yaml.safe_load(p.read_text()) for p in sorted((PROM / "rules").glob("*.yml"))]
    return [rule for doc in docs for group in doc["groups"] for rule in group["rules"]]


@needs_promtool
def test_promtool_checks_the_config_with_its_rules_and_targets() -> None:
    out = promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in out


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    out = promtool("check", "rules", *sorted(str(p) for p in (PROM / "rules").glob("*.yml")))
    assert "SUCCESS" in out


@needs_promtool
def test_promtool_rule_unit_tests_pass() -> None:
    out = promtool("test", "rules", "tests/docex.rules.test.yml")
    assert "SUCCESS" in out


def test_required_alerts_exist_with_chinese_summaries() -> None:
    alerts = {r["alert"]: r for r in rules() if "alert" in r}
    assert set(alerts) >= REQUIRED_ALERTS
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        summary = rule["annotations"]["summary"]
        assert re.search(r"[\u4e00-\u9fff]", summary), f"{name}: summary not in Chinese"
        assert rule["annotations"]["summary_en"], name


def test_rule_unit_tests_cover_at_least_three_alerts() -> None:
    doc = yaml.safe_load((PROM / "tests" / "docex.rules.test.yml").read_text())
    firing = {
        case["alertname"]
        for test in doc["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert len(firing & REQUIRED_ALERTS) >= 3, firing


def test_rules_only_use_metrics_the_code_defines(defined_metric_names: set[str]) -> None:
    for rule in rules():
        used = set(METRIC.findall(rule["expr"]))
        assert used, rule.get("alert")
        unknown = used - defined_metric_names
        assert not unknown, f"{rule.get('alert')}: {sorted(unknown)}"


def test_scrape_config_covers_every_service() -> None:
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"docex-hub", "docex-agent", "docex-bridge", "docex-tsa", "rabbitmq"} <= set(jobs)
    rabbit = jobs["rabbitmq"]["static_configs"][0]["targets"]
    assert any(t.endswith(":15692") for t in rabbit)
