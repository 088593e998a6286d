"""The information centre's commands on the real broker: `docex hub init` lays out a home
and its vhost, `docex unit add|import|list|disable|enable|phase` keep the directory and
each unit's limited broker login, `docex audit verify`, `track`, `documents`, `hub report`."""

from __future__ import annotations

import csv
import json
import shlex
import stat
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from docex.agent.config import AgentConfig
from docex.broker import Management
from docex.hub.config import HubConfig
from tests.cli.runner import docex_binary, refused, run
from tests.e2e.support import knows

pytestmark = pytest.mark.rabbitmq

PREFIX = "qingyuan.yangshan"
ZFB, FGJ = "qingyuan.yangshan.zfb", "qingyuan.yangshan.fgj"
API = "http://127.0.0.1:15672/api"


@dataclass
class Hub:
    home: Path
    root: Path
    vhost: str
    user_prefix: str

    def permissions(self, address: str) -> dict[str, str] | None:
        resp = requests.get(f"{API}/permissions/{quote(self.vhost, safe='')}/{quote(self.user_prefix + address, safe='')}",
                            auth=("guest", "guest"), timeout=10)
        return None if resp.status_code == 404 else resp.json()

    def units(self) -> dict[str, dict[str, object]]:
        result = run("unit", "list", "--home", self.home, "--json")
        assert result.exit_code == 0, result.output
        return {u["address"]: u for u in json.loads(result.output)}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    tag = uuid.uuid4().hex[:8]
    root = tmp_path_factory.mktemp("hubcli")
    made = Hub(root / "hub", root, f"docex-test-{tag}", f"t{tag}.")
    result = run("hub", "init", "--home", made.home, "--prefix", PREFIX, "--name", "阳山县电子公文交换中心",
                 "--vhost", made.vhost, "--user-prefix", made.user_prefix, "--insecure-no-passphrase")
    try:
        assert result.exit_code == 0, result.output
        yield made
    finally:
        with Management() as mgmt:
            mgmt.delete_vhost(made.vhost)
            users = requests.get(f"{API}/users", auth=("guest", "guest"), timeout=10).json()
            for user in users:
                if user["name"].startswith(made.user_prefix):
                    mgmt.delete_user(user["name"])


def test_init_lays_out_the_home_and_the_broker_topology(hub: Hub) -> None:
    config = HubConfig.load(hub.home)
    assert config.prefix == PREFIX and config.database_url.startswith("sqlite:///")
    assert stat.S_IMODE((hub.home / "docex.toml").stat().st_mode) == 0o600  # it holds the hub's broker password
    for path in ("ca/ca.crt", "hub/server.crt", "hub.db"):
        assert (hub.home / path).exists(), path
    with Management() as mgmt:
        ingress = mgmt.get_queue(hub.vhost, "hub.ingress")
        dead = mgmt.get_queue(hub.vhost, "hub.dead")
    assert ingress is not None and ingress.type == "quorum" and ingress.arguments["x-delivery-limit"] >= 1
    assert ingress.arguments["x-dead-letter-exchange"] == "docex.dlx" and dead is not None
    refused(run("hub", "init", "--home", hub.home, "--prefix", PREFIX, "--vhost", hub.vhost,
                "--insecure-no-passphrase"), "hub_exists")


def test_unit_add_writes_an_agent_home_with_a_login_for_its_own_queue_only(hub: Hub) -> None:
    out = hub.root / "agents" / ZFB
    result = run("unit", "add", "--home", hub.home, "--address", ZFB, "--name", "阳山县人民政府办公室",
                 "--kind", "government", "--out", out)
    assert result.exit_code == 0, result.output
    config = AgentConfig.load(out)
    assert "[broker]" in (out / "docex.toml").read_text("utf-8")
    assert config.broker_url.startswith(f"amqp://{quote(hub.user_prefix + ZFB, safe='')}:")
    assert quote(hub.vhost, safe="") in config.broker_url
    for name in ("sign.crt", "sign.key", "enc.crt", "enc.key", "ca.crt", "directory.der"):
        assert (out / name).exists(), name
    assert knows(out, ZFB)
    assert hub.permissions(ZFB) == {"user": hub.user_prefix + ZFB, "vhost": hub.vhost, "configure": "^$",
                                    "write": r"^docex\.ingress$", "read": rf"^unit\.{ZFB.replace('.', chr(92) + '.')}$"}
    assert hub.units()[ZFB]["state"] == "enabled"

    refused(run("unit", "add", "--home", hub.home, "--address", ZFB, "--name", "x", "--out", hub.root / "again"),
            "unit_exists")
    refused(run("unit", "add", "--home", hub.home, "--address", "qingyuan.yingde.zfb", "--name", "x",
                "--out", hub.root / "elsewhere"), "bad_address")


def test_disable_takes_the_login_away_and_enable_gives_it_back(hub: Hub) -> None:
    run("unit", "add", "--home", hub.home, "--address", FGJ, "--name", "阳山县发展和改革局", "--out", hub.root / "fgj")
    disabled = run("unit", "disable", "--home", hub.home, FGJ)
    assert disabled.exit_code == 0 and "停用" in disabled.output
    assert hub.permissions(FGJ) is None and hub.units()[FGJ]["state"] == "disabled"
    listing = run("unit", "list", "--home", hub.home)
    assert any(FGJ in line and "停用" in line for line in listing.output.splitlines())

    assert run("unit", "enable", "--home", hub.home, FGJ).exit_code == 0
    perms = hub.permissions(FGJ)
    assert perms is not None and perms["write"] == r"^docex\.ingress$"
    assert hub.units()[FGJ]["state"] == "enabled"
    refused(run("unit", "disable", "--home", hub.home, "qingyuan.yangshan.nosuch"), "unknown_recipient")


def test_import_registers_a_directory_once_and_every_home_knows_the_others(hub: Hub) -> None:
    rows = [("qingyuan.yangshan.jyj", "阳山县教育局", "government", "", ""),
            ("qingyuan.yangshan.kjj", "阳山县科学技术局", "government", "", ""),
            ("qingyuan.yangshan.mzj", "阳山县民政局", "government", "", ""),
            ("qingyuan.yingde.zfb", "英德市人民政府办公室", "government", "", "")]  # another county's: skipped
    path = hub.root / "units.csv"
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["address", "name", "kind", "building", "existing_certificate"])
        writer.writerows(rows)
    out = hub.root / "imported"
    first = run("unit", "import", "--home", hub.home, path, "--out", out)
    assert first.exit_code == 0, first.output
    assert "3 unit(s) registered, 1 skipped (0 refused, 1 already known or outside" in first.output
    assert "第 5 行 line 5: qingyuan.yingde.zfb  不属于本中心，跳过" in first.output
    again = run("unit", "import", "--home", hub.home, path, "--out", out)
    assert "0 unit(s) registered" in again.output
    for address, *_ in rows[:3]:
        assert all(knows(out / address, other) for other, *_ in rows[:3])
    assert not (out / "qingyuan.yingde.zfb").exists()


def test_import_of_a_gbk_semicolon_list_with_a_dry_run_and_refused_rows(hub: Hub) -> None:
    path = hub.root / "wps.csv"
    path.write_bytes(("地址;名称;类型\r\n"
                      "qingyuan.yangshan.sfj;阳山县司法局;government\r\n"
                      ";没有地址;government\r\n"
                      "qingyuan.yangshan.sfj;阳山县司法局（重复）;government\r\n").encode("gbk"))
    out = hub.root / "wps"
    dry = run("unit", "import", "--home", hub.home, path, "--out", out, "--dry-run", "--json")
    assert dry.exit_code == 1 and "Traceback" not in dry.output, dry.output
    plan = json.loads(dry.output)
    assert plan["encoding"] == "gb18030" and plan["delimiter"] == ";" and plan["would_register"] == ["qingyuan.yangshan.sfj"]
    assert [(r["line"], r["code"]) for r in plan["skipped"]] == [(3, "bad_csv"), (4, "duplicate_row")]
    assert not out.exists() and "qingyuan.yangshan.sfj" not in hub.units()

    done = run("unit", "import", "--home", hub.home, path, "--out", out)
    assert done.exit_code == 1, done.output  # registered, but says some rows were refused
    assert "1 unit(s) registered" in done.output and "第 3 行 line 3" in done.output and "第 4 行 line 4" in done.output
    assert hub.units()["qingyuan.yangshan.sfj"]["name"] == "阳山县司法局"


def test_phase_is_set_and_shown(hub: Hub) -> None:
    run("unit", "add", "--home", hub.home, "--address", "qingyuan.yangshan.czj", "--name", "阳山县财政局",
        "--out", hub.root / "czj")
    assert run("unit", "phase", "--home", hub.home, "qingyuan.yangshan.czj", "pilot").exit_code == 0
    assert hub.units()["qingyuan.yangshan.czj"]["phase"] == "pilot"
    assert "试点" in run("unit", "list", "--home", hub.home).output
    assert run("unit", "phase", "--home", hub.home, "qingyuan.yangshan.czj", "someday").exit_code == 2


def test_audit_documents_track_and_report(hub: Hub) -> None:
    verified = run("audit", "verify", "--home", hub.home, "--json")
    assert verified.exit_code == 0 and json.loads(verified.output)["ok"] is True
    assert "审计链完整" in run("audit", "verify", "--home", hub.home).output
    docs = run("documents", "--home", hub.home, "--json")
    assert docs.exit_code == 0 and json.loads(docs.output) == []
    refused(run("track", "--home", hub.home, "00000000-0000-4000-8000-000000000000"), "unknown_document")
    report = run("hub", "report", "--home", hub.home, "--from", "2011-08-01", "--to", "2011-09-01", "--json")
    assert report.exit_code == 0, report.output
    assert ZFB in {u["address"] for u in json.loads(report.output)["units"]}
    refused(run("unit", "list", "--home", hub.root / "not-a-hub"), "no_hub")


def test_output_cut_short_by_head_ends_quietly(hub: Hub, tmp_path: Path) -> None:
    """`docex … | head`: far more output than a pipe holds, the reader gone after 100 bytes,
    and nothing on stderr (no traceback, no error line)."""
    big = tmp_path / "big.csv"
    with big.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["address", "name", "kind"])
        for i in range(8000):
            writer.writerow([f"{PREFIX}.u{i:05d}", f"测试单位第{i}号", "agency"])
    docex = " ".join(shlex.quote(part) for part in docex_binary())
    script = (f"{docex} unit import --home {shlex.quote(str(hub.home))} {shlex.quote(str(big))} --out {shlex.quote(str(tmp_path / 'homes'))} --dry-run --json"
              f" 2>{shlex.quote(str(tmp_path / 'err'))} | head -c 100 >/dev/null; echo ${{PIPESTATUS[0]}}")
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    whole = run("unit", "import", "--home", hub.home, big, "--out", tmp_path / "homes", "--dry-run", "--json")
    assert len(whole.output) > 200_000  # more than any pipe buffer: the writer meets the closed end
    assert (tmp_path / "err").read_text() == "", (tmp_path / "err").read_text()
    assert done.stdout.strip() in ("0", "1"), done.stdout  # click's quiet exit on a closed pipe is 1


def test_audit_verify_fails_when_the_tail_is_cut_with_its_head(hub: Hub) -> None:
    """Whoever can write hub.db can cut the log's tail and rewrite the stored head so that
    the hash chain alone still says intact; the signed checkpoint kept outside the database
    makes `docex audit verify` fail (exit 1, `entries_missing`). Restored afterwards."""
    from sqlalchemy import delete, select

    from docex.hub import audit
    from docex.hub.db import Database
    from docex.hub.models import AuditEntry, Setting

    made = run("audit", "checkpoint", "--home", hub.home, "--insecure-no-passphrase", "--json")
    assert made.exit_code == 0, made.output
    assert run("unit", "phase", "--home", hub.home, ZFB, "dual_track").exit_code == 0  # audited after it
    assert run("audit", "verify", "--home", hub.home).exit_code == 0
    db = Database(HubConfig.load(hub.home).database_url)
    try:
        with db.session() as s:
            rows = s.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars().all()
            cut = [{c.name: getattr(r, c.name) for c in AuditEntry.__table__.columns} for r in rows[-4:]]
            head = s.get(Setting, audit.HEAD_KEY)
            assert head is not None
            kept_head = head.value
            s.execute(delete(AuditEntry).where(AuditEntry.id.in_([r["id"] for r in cut])))
            head.value = rows[-5].hash
        broken = run("audit", "verify", "--home", hub.home, "--json")
        assert broken.exit_code == 1, broken.output
        report = json.loads(broken.output)
        assert report["ok"] is False and report["problem"] in ("", None)  # the chain alone sees nothing
        assert "entries_missing" in {p["code"] for p in report["checkpoint_problems"]}
        plain = run("audit", "verify", "--home", hub.home)
        assert plain.exit_code == 1 and "checkpoint FAILED [entries_missing]" in plain.stderr
    finally:
        with db.session() as s:
            existing = set(s.execute(select(AuditEntry.id)).scalars())
            for row in cut:
                if row["id"] not in existing:
                    s.add(AuditEntry(**row))
            head = s.get(Setting, audit.HEAD_KEY)
            assert head is not None
            head.value = kept_head
        db.dispose()
    assert run("audit", "verify", "--home", hub.home).exit_code == 0
