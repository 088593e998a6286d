"""Delivery evidence end to end across the city link (issue 12's "done when"): a county
unit sends to a city unit, a person there signs for it; the evidence is exported at the
sender, at the recipient and at the county hub, and each bundle verifies offline in a clean
folder holding only the CA certificates (`docex evidence verify`, and OpenSSL alone for
every evidence, timestamp and the archive timestamp); a changed byte fails; the sender's
bundle renewed at its terminal verifies too. The county hub's audit checkpoint reaches the
city hub over the link."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from docex.agent.actions import sign_for
from docex.agent.evidence import record_opened
from docex.agent.store import EvidenceRow
from docex.agent.store import Notice as NoticeRow
from docex.cli.localnet import CityCounty
from docex.hub.units import CsvUnit
from docex.pki.ca import CertificateAuthority
from docex.pki.tsa import TimeStampAuthority, TsaHttpServer, serve
from docex.protocols.bundle import read_files
from tests.cli.runner import run
from tests.e2e.support import Network, city_and_county, knows, start_linked, wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

SWB, ZFB = "qingyuan.swb", "qingyuan.zfb"
XXZX, XWB = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.xwb"
CITY_UNITS = [CsvUnit(SWB, "中共清远市委办公室", "party", "", ""), CsvUnit(ZFB, "清远市人民政府办公室", "government", "", "")]
COUNTY_UNITS = [CsvUnit(XXZX, "阳山县信息中心", "county", "admin_building", ""),
                CsvUnit(XWB, "中共阳山县委办公室", "party", "admin_building", "")]


@dataclass
class Levels:
    cc: CityCounty
    city: Network
    county: Network
    county_tsa: TsaHttpServer
    city_tsa: TsaHttpServer


@pytest.fixture(scope="module")
def levels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Levels]:
    root = tmp_path_factory.mktemp("evidence")
    with city_and_county(root, "ev", city_units=CITY_UNITS, county_units=COUNTY_UNITS) as (cc, city, county):
        # Each information centre's TSA over HTTP, for the agents' bundles (the hubs use theirs in-process).
        county_tsa = serve(TimeStampAuthority.load(county.hub_home / "tsa", None), "127.0.0.1", 0)
        city_tsa = serve(TimeStampAuthority.load(city.hub_home / "tsa", None), "127.0.0.1", 0)
        try:
            start_linked(cc, city, county, per_process=4)
            wait_until(lambda: knows(county.home(XXZX), SWB) and knows(city.home(SWB), XXZX), 90, "directories")
            yield Levels(cc, city, county, county_tsa, city_tsa)
        finally:
            for server in (county_tsa, city_tsa):
                server.shutdown()
                server.server_close()


def _events(home_ctx: object, message_id: str) -> list[tuple[str, str, bool]]:
    from docex.pki.timestamps import signature_timestamp

    store = home_ctx.store  # type: ignore[attr-defined]
    with store.session() as s:
        rows = [(r.event, r.direction, signature_timestamp(r.der) is not None)
                for r in s.execute(select(EvidenceRow).where(EvidenceRow.message_id == message_id)).scalars()]
        rows += [(n.event, "notice", signature_timestamp(n.der) is not None)
                 for n in s.execute(select(NoticeRow).where(NoticeRow.message_id == message_id)).scalars()]
    return rows


def _verify(bundle: Path, cas: list[Path], *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    """`docex evidence verify` in a clean folder, as a separate process: no server, only files."""
    args = [sys.executable, "-m", "docex.cli.main", "evidence", "verify", bundle.name, "--json", *extra]
    for ca in cas:
        args += ["--ca", ca.name]
    result = subprocess.run(args, cwd=bundle.parent, capture_output=True, text=True, timeout=120)
    return result.returncode, json.loads(result.stdout)


def _openssl(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], cwd=folder, capture_output=True, text=True, timeout=60)


def test_evidence_across_the_city_link_verifies_offline(levels: Levels, tmp_path: Path) -> None:
    county, city = levels.county, levels.city
    mid, _ = county.send(XXZX, [SWB], doc_number="阳信发〔2026〕12号")
    city.wait_hub(mid, "delivered", [SWB])
    # A person of the city unit opens it and signs for it (签收).
    city_ca = CertificateAuthority.open(city.config.ca_dir, None)
    person = tmp_path / "person"
    city_ca.issue_person(SWB, "王科长", person, None)
    assert record_opened(city.agent(SWB), mid, person_dir=person)
    sign_for(city.agent(SWB), mid, person_dir=person)
    county.wait_sent(XXZX, mid, "signed_for", [SWB])

    # The sender keeps every evidence, each timestamped: its hub's acceptance, each hub's
    # relay (county out, city in), and the recipient's receipts (stamped by the city hub).
    wanted_sender = {("accepted", "notice", True), ("relayed", "notice", True), ("delivered", "received", True),
                     ("opened", "received", True), ("signed_for", "received", True)}
    wait_until(lambda: wanted_sender <= set(_events(county.agent(XXZX), mid)), 90, "the sender's evidence")
    assert sum(1 for e in _events(county.agent(XXZX), mid) if e[0] == "relayed") == 2
    # The recipient keeps what it sent and the hub's timestamped copies: the delivered
    # receipt is still there next to the signed-for one (nothing overwritten).
    wanted_recipient = {("delivered", "sent", False), ("signed_for", "sent", False), ("opened", "sent", False),
                        ("delivered", "received", True), ("signed_for", "received", True)}
    wait_until(lambda: wanted_recipient <= set(_events(city.agent(SWB), mid)), 90, "the recipient's evidence")

    # Export at the sender, the recipient and the county hub.
    clean = tmp_path / "clean"
    clean.mkdir()
    bundles = {"sender": clean / "sender.zip", "recipient": clean / "recipient.zip", "hub": clean / "hub.zip"}
    for home, out, tsa in ((county.home(XXZX), bundles["sender"], levels.county_tsa.url),
                           (city.home(SWB), bundles["recipient"], levels.city_tsa.url),
                           (county.hub_home, bundles["hub"], None)):
        args = ["evidence", "export", "--home", str(home), mid, "-o", str(out)] + (["--tsa", tsa] if tsa else [])
        result = run(*args)
        assert result.exit_code == 0, result.output
    cas = [clean / "county-ca.crt", clean / "city-ca.crt"]
    shutil.copy(county.config.ca_dir / "ca.crt", cas[0])
    shutil.copy(city.config.ca_dir / "ca.crt", cas[1])
    assert sorted(p.name for p in clean.iterdir()) == ["city-ca.crt", "county-ca.crt", "hub.zip", "recipient.zip",
                                                       "sender.zip"]

    code, report = _verify(bundles["sender"], cas)
    assert code == 0 and report["status"] == "VALID", report["problems"]
    events = [r["event"] for r in report["timeline"]]
    assert events[0] == "accepted" and events.count("relayed") == 2 and events[-1] == "signed_for"
    assert {"delivered", "opened"} <= set(events)
    signed = report["timeline"][-1]
    assert (signed["issuer"], signed["person"], signed["zh"]) == (SWB, "王科长", "已签收")
    assert any("inner package" in c for c in report["checks"])

    code, report = _verify(bundles["recipient"], cas)
    assert code == 0 and report["status"] == "VALID", report["problems"]
    assert [r["event"] for r in report["timeline"]] == ["delivered", "opened", "signed_for"]

    code, report = _verify(bundles["hub"], cas)
    assert code == 0 and report["status"] == "VALID", report["problems"]
    assert any("chained to checkpoint" in c for c in report["checks"])
    assert {"accepted", "relayed", "delivered", "signed_for"} <= {r["event"] for r in report["timeline"]}

    # Any changed byte fails.
    data = bytearray(bundles["sender"].read_bytes())
    data[len(data) // 3] ^= 0x01
    damaged = clean / "damaged.zip"
    damaged.write_bytes(bytes(data))
    code, report = _verify(damaged, cas)
    assert code == 1 and not report["ok"]

    # OpenSSL alone: every evidence, its timestamp, and the bundle's archive timestamp.
    unpacked = tmp_path / "unpacked"
    for name, blob in read_files(bundles["sender"].read_bytes()).items():
        (unpacked / name).parent.mkdir(parents=True, exist_ok=True)
        (unpacked / name).write_bytes(blob)
    (unpacked / "cas.pem").write_bytes(cas[0].read_bytes() + cas[1].read_bytes())
    statements = sorted((unpacked / "evidence").glob("*.p7s"))
    assert len(statements) >= 6
    for p7s in statements:
        stem = p7s.with_suffix("")
        result = _openssl(unpacked, "cms", "-verify", "-binary", "-inform", "DER", "-in", str(p7s),
                          "-CAfile", "cas.pem", "-purpose", "any", "-out", str(stem) + ".json")
        assert result.returncode == 0, (p7s.name, result.stderr)
        assert json.loads(Path(str(stem) + ".json").read_text("utf-8"))["message_id"] == mid
        result = _openssl(unpacked, "ts", "-verify", "-token_in", "-in", str(stem) + ".tsr",
                          "-data", str(stem) + ".sig", "-CAfile", "cas.pem")
        assert result.returncode == 0 and "Verification: OK" in result.stdout, (p7s.name, result.stderr)
    result = _openssl(unpacked, "ts", "-verify", "-token_in", "-in", "archive/0001.tsr", "-data", "MANIFEST.json",
                      "-CAfile", "cas.pem")
    assert result.returncode == 0 and "Verification: OK" in result.stdout, result.stderr

    # Renewed at the sender's terminal: the CRLs of that day from the agent's home go in.
    renewed = clean / "renewed.zip"
    result = run("evidence", "renew", str(bundles["sender"]), "-o", str(renewed), "--home", str(county.home(XXZX)),
                 "--tsa", levels.county_tsa.url, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["crls_of"], result.output
    code, report = _verify(renewed, cas)
    assert code == 0 and report["status"] == "VALID" and len(report["archive"]["timestamps"]) == 2, report["problems"]


def test_the_county_audit_checkpoint_reaches_the_city_hub(levels: Levels) -> None:
    county, city = levels.county, levels.city
    result = run("audit", "checkpoint", "--home", str(county.hub_home), "--insecure-no-passphrase", "--json")
    assert result.exit_code == 0, result.output
    seq = json.loads(result.output)["seq"]
    kept = city.hub_home / "audit-checkpoints" / "remote" / county.config.prefix / f"{seq:08d}.p7s"
    wait_until(kept.exists, 90, "the county's checkpoint at the city hub")
    assert kept.read_bytes() == (county.hub_home / "audit-checkpoints" / f"{seq:08d}.p7s").read_bytes()
    result = run("audit", "verify", "--home", str(county.hub_home), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["checkpoint_problems"] == []
