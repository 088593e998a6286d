"""docker-compose.yml checked statically (no Docker engine here): it parses, every
service can be built or pulled, every mounted host file exists, ports do not clash,
dependencies exist, and Prometheus scrapes hosts that the stack defines."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
import yaml

from tests.monitoring.conftest import MONITORING, REPO

COMPOSE = REPO / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())  # also resolves the x-docex anchors
    assert isinstance(doc, dict) and doc["services"]
    return doc


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def test_the_stack_has_every_part(compose: dict[str, Any]) -> None:
    names = set(services(compose))
    assert {
        "rabbitmq",
        "postgres",
        "init",
        "hub",
        "bridge",
        "tsa",
        "prometheus",
        "grafana",
    } <= names
    assert len([n for n in names if n.startswith("agent-")]) >= 2
    commands = {n: " ".join(s.get("command", [])) for n, s in services(compose).items()}
    assert commands["hub"].startswith("hub run --home /data/hub")
    assert commands["bridge"].startswith("bridge run --home /data/bridge --hub /data/hub")
    assert commands["tsa"].startswith("tsa run")
    for name in names:
        if name.startswith("agent-"):
            assert re.fullmatch(
                r"agent run --home /data/agents/qingyuan\.yangshan\.\w+( --metrics-port \d+)?",
                commands[name],
            ), name


def test_every_service_has_an_image_or_a_build(compose: dict[str, Any]) -> None:
    for name, svc in services(compose).items():
        assert "image" in svc or "build" in svc, name
        if "build" in svc:
            build = svc["build"]
            context = REPO / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            assert (context / dockerfile).is_file(), name


def test_every_mounted_host_path_exists(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes") or {})
    for name, svc in services(compose).items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in named, f"{name}: volume {source} not declared"


def test_host_ports_do_not_clash(compose: dict[str, Any]) -> None:
    published: list[str] = []
    for svc in services(compose).values():
        for port in svc.get("ports", []):
            parts = str(port).split(":")
            assert len(parts) >= 2, f"publish {port} with an explicit host port"
            published.append(parts[-2])
    clashes = [p for p, n in Counter(published).items() if n > 1]
    assert not clashes, clashes


def test_depends_on_targets_exist(compose: dict[str, Any]) -> None:
    names = set(services(compose))
    for name, svc in services(compose).items():
        deps = svc.get("depends_on", [])
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in names and dep != name, f"{name} depends on {dep}"


def test_rabbitmq_ships_the_prometheus_plugin(compose: dict[str, Any]) -> None:
    rabbit = services(compose)["rabbitmq"]
    assert rabbit["image"].startswith("rabbitmq:3.10-management")
    (plugins_mount,) = [
        v for v in rabbit["volumes"] if v.endswith("/etc/rabbitmq/enabled_plugins:ro")
    ]
    plugins = (REPO / plugins_mount.split(":")[0]).read_text()
    assert "rabbitmq_prometheus" in plugins and "rabbitmq_management" in plugins
    assert plugins.strip().endswith("].")  # an Erlang term


def test_prometheus_scrapes_services_of_the_stack(compose: dict[str, Any]) -> None:
    names = set(services(compose))
    prom = MONITORING / "prometheus"
    config = yaml.safe_load((prom / "prometheus.yml").read_text())
    targets = [
        t
        for job in config["scrape_configs"]
        for sc in job.get("static_configs", [])
        for t in sc["targets"]
    ]
    for job in config["scrape_configs"]:
        for sd in job.get("file_sd_configs", []):
            for pattern in sd["files"]:
                for path in prom.glob(pattern):
                    targets += [
                        t for group in yaml.safe_load(path.read_text()) for t in group["targets"]
                    ]
    for target in targets:
        host, port = target.rsplit(":", 1)
        assert host == "localhost" or host in names, f"scrape target {target}"
    for target in targets:
        host, port = target.rsplit(":", 1)
        svc = services(compose).get(host)
        if svc is None or "build" not in svc:
            continue  # not a docex service
        command, env = svc.get("command", []), svc.get("environment", {})
        if "--metrics-port" in command:
            served = command[command.index("--metrics-port") + 1]
        else:
            served = env.get("DOCEX_METRICS_PORT")
        assert served == port, f"{host} serves metrics on {served}, scraped on {port}"
        assert env.get("DOCEX_METRICS_HOST") == "0.0.0.0", host


def test_dockerfile_copies_files_that_exist() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", dockerfile, re.M)
    for line in re.findall(r"^COPY\s+(.+)$", dockerfile, re.M):
        *sources, _dest = line.split()
        for source in sources:
            if not source.startswith("--"):
                assert (REPO / source).exists(), f"Dockerfile COPY {source}: missing"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_the_init_script_and_seed_directory_are_shipped() -> None:
    compose_dir = MONITORING / "compose"
    assert (compose_dir / "init.sh").read_text().startswith("#!/bin/sh")
    header = (compose_dir / "units.csv").read_text().splitlines()[0]
    assert header.startswith("address,name,kind")
