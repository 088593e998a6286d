"""Cost per document with 125 and with 10,000 registered units (issue 16: at most 1.1×), and
what one directory change costs each agent, whole snapshot versus signed delta.

One document, in process and on one core, is: the sender packs it for 3 recipients
(`queue_document`: directory look-ups, encryption, the outbox row), the hub checks it
(`Intake._check`: signature, chain, sender and recipients against its units table, the
recipients' keys), and one recipient opens, stores and receipts it (`Receiver.document`).
Everything the county's size could enter (directory look-ups, snapshot parsing, trust
building, the hub's unit rows) is on that path; the broker is not (it does not know the
directory). Seconds are CPU time of this process (the machine is shared), wall time beside.

The filler units share one real encryption certificate, so the snapshot has its real size
and the hub checks each entry as it would (issuing 10,000 RSA keys would take an hour).

Run: ``python -m bench.directory_scale [--quick] [--units 125,10000]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pika

from docex.agent.config import AgentKeys, write_home
from docex.agent.context import AgentContext
from docex.agent.receiving import Receiver
from docex.agent.sending import Draft, queue_document
from docex.agent.store import Outgoing
from docex.broker import Delivery
from docex.hub import directory as hub_directory
from docex.hub.config import BrokerConfig, HubConfig
from docex.hub.context import HubContext
from docex.hub.db import Database, migrate
from docex.hub.identity import HubIdentity
from docex.hub.intake import Intake
from docex.hub.models import Unit
from docex.pki.ca import CertificateAuthority
from docex.pki.keys import load_certificate, load_private_key
from docex.protocols import messages
from docex.protocols.directory import verify_delta

PREFIX = "qingyuan.yangshan"
SENDER = f"{PREFIX}.xxzx"
RECIPIENTS = (f"{PREFIX}.zfb", f"{PREFIX}.xwb", f"{PREFIX}.jw")
REAL = {SENDER: "阳山县信息中心", RECIPIENTS[0]: "阳山县人民政府办公室", RECIPIENTS[1]: "中共阳山县委宣传部",
        RECIPIENTS[2]: "中共阳山县纪律检查委员会"}
FILES = {"通知.txt": "请各单位按时参加培训。".encode() * 500}  # about 10 KB


@dataclass
class Keys:
    root: Path
    ca: CertificateAuthority


@dataclass
class Row:
    units: int
    doc_cpu_ms: float
    doc_wall_ms: float
    parts_ms: dict[str, float]
    whole_bytes: int
    whole_agent_ms: float
    delta_bytes: int
    delta_agent_ms: float
    hub_change_ms: float


def _cpu(fn: Callable[[], object]) -> tuple[float, float]:
    c, w = time.process_time(), time.perf_counter()
    fn()
    return (time.process_time() - c) * 1000, (time.perf_counter() - w) * 1000


def _county(root: Path, units: int, keys: Keys) -> tuple[HubContext, Path]:
    """A hub database with `units` units (4 real, the rest filler) and its signed snapshot."""
    home = root / f"hub-{units}"
    home.mkdir()
    url = f"sqlite:///{home / 'hub.db'}"
    migrate(url)
    config = HubConfig(home=home, prefix=PREFIX, name="阳山县电子公文交换中心", database_url=url,
                       broker=BrokerConfig(url="amqp://hub:x@127.0.0.1:5672/bench", vhost="bench", user_prefix="b."))
    hub_dir = keys.root / "hub"
    ca_dir = keys.root / "ca"
    identity = HubIdentity(cert=load_certificate(hub_dir / "server.crt"), key=load_private_key(hub_dir / "server.key", None),
                           ca_cert=keys.ca.certificate, anchor_files=[ca_dir / "ca.crt"], crl_files=[ca_dir / "crl.pem"])
    db = Database(url)
    filler = (keys.root / RECIPIENTS[0] / "enc.crt").read_text()
    with db.session() as s:
        for address, name in REAL.items():
            s.add(Unit(address=address, name=name, kind="county", enc_cert=(keys.root / address / "enc.crt").read_text(),
                       broker_user=f"b.{address}"))
        for i in range(units - len(REAL)):
            s.add(Unit(address=f"{PREFIX}.u{i:05d}", name=f"阳山县第{i}号单位", kind="township", enc_cert=filler))
        hub_directory.bump(s)
    return HubContext(config, db, identity), home


def _agent(root: Path, keys: Keys, address: str, der: bytes, units: int) -> AgentContext:
    home = root / f"{address}-{units}"
    for name in ("sign.crt", "sign.key", "enc.crt", "enc.key"):
        src = keys.root / address / name
        if src.exists():
            home.mkdir(exist_ok=True)
            (home / name).write_bytes(src.read_bytes())
    for extra in (keys.root / address).iterdir():
        if not (home / extra.name).exists() and extra.is_file():
            (home / extra.name).write_bytes(extra.read_bytes())
    write_home(home, address=address, name=REAL[address], hub_prefix=PREFIX,
               broker_url=f"amqp://b.{address}:x@127.0.0.1:5672/bench", ca_pem=(keys.root / "ca" / "ca.crt").read_bytes(),
               anchors_pem=[], crl_pem=(keys.root / "ca" / "crl.pem").read_bytes(), directory_der=der,
               keys=AgentKeys(insecure_no_passphrase=True))
    return AgentContext.open(home)


def measure(root: Path, keys: Keys, units: int, docs: int) -> Row:
    ctx, _ = _county(root, units, keys)
    with ctx.db.read() as s:
        snap, whole = hub_directory.current_snapshot(s, PREFIX, ctx.identity)
    sender = _agent(root, keys, SENDER, whole, units)
    recipient = _agent(root, keys, RECIPIENTS[0], whole, units)
    intake, receiver = Intake(ctx), Receiver(recipient)
    origin = ctx.origin(f"b.{SENDER}")

    def one_document(n: int) -> list[tuple[float, float]]:
        draft = Draft(to=RECIPIENTS, title=f"关于第{n}次测试的通知", doc_number=f"阳信发〔2011〕{n}号", files=FILES)
        holder: dict[str, bytes] = {}

        def pack() -> None:
            queue_document(sender, draft)
            with sender.store.session() as s:
                row = s.query(Outgoing).filter(Outgoing.message_id == draft.message_id).one()
                holder["body"] = row.body or b""

        def check() -> None:
            intake._check(Delivery(body=holder["body"], message_id=draft.message_id, headers={}, user_id=f"b.{SENDER}",
                                   redelivered=False, delivery_tag=1,
                                   properties=pika.BasicProperties(type=messages.DOCUMENT)), origin)

        def receive() -> None:
            receiver.document(holder["body"])

        return [_cpu(pack), _cpu(check), _cpu(receive)]

    parts: dict[str, list[float]] = {"pack": [], "hub_check": [], "receive": []}
    walls: list[float] = []
    for n in range(docs + 3):  # three to warm up
        timed = one_document(n)
        if n >= 3:
            for name, (cpu, _) in zip(parts, timed, strict=True):
                parts[name].append(cpu)
            walls.append(sum(w for _, w in timed))

    # One change of the directory (a unit renamed), as each agent receives it.
    with ctx.db.session() as s:
        unit = s.get(Unit, f"{PREFIX}.u00000") or s.get(Unit, RECIPIENTS[2])
        assert unit is not None
        unit.name += "（更名）"
        hub_directory.bump(s)
    c0 = time.process_time()
    with ctx.db.read() as s:
        after, whole_after = hub_directory.current_snapshot(s, PREFIX, ctx.identity)
    delta = hub_directory.signed_delta(snap, after, ctx.identity)
    hub_change = (time.process_time() - c0) * 1000
    whole_agent, _ = _cpu(lambda: recipient.verify_snapshot(whole_after))
    delta_agent, _ = _cpu(lambda: sender.accept_delta(delta))
    assert sender.directory_version() == after.version and verify_delta(delta, sender.trust).version == after.version
    for agent in (sender, recipient):
        agent.store.dispose()
    ctx.db.dispose()
    medians = {name: statistics.median(values) for name, values in parts.items()}
    return Row(units, sum(medians.values()), statistics.median(walls), medians, len(whole_after), whole_agent,
               len(delta), delta_agent, hub_change)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 documents per size instead of 40")
    parser.add_argument("--units", default="125,10000")
    parser.add_argument("--docs", type=int, help="documents per size (default 40, --quick 10)")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.units.split(",")]
    docs = args.docs or (10 if args.quick else 40)
    with tempfile.TemporaryDirectory(prefix="docex-dirscale-") as tmp:
        root = Path(tmp)
        ca = CertificateAuthority.init(root / "ca", "阳山县信息中心", None)
        ca.issue_server("阳山县电子公文交换中心 hub", root / "hub", None, hub_prefix=PREFIX)
        for address, name in REAL.items():
            ca.issue_unit(address, name, root / address, None)
        keys = Keys(root, ca)
        rows = [measure(root, keys, n, docs) for n in sizes]
    base = rows[0]
    print(f"directory scale: per document (pack for 3 + hub check + 1 recipient opens), median of {docs}, CPU ms")
    print(f"{'units':>7} {'doc CPU':>8} {'doc wall':>9} {'pack':>7} {'hub':>7} {'recv':>7} {'ratio':>6} | "
          f"{'whole B':>10} {'whole ms':>9} {'delta B':>8} {'delta ms':>9} {'hub/chg':>8}")
    for r in rows:
        print(f"{r.units:>7} {r.doc_cpu_ms:>8.1f} {r.doc_wall_ms:>9.1f} {r.parts_ms['pack']:>7.1f} "
              f"{r.parts_ms['hub_check']:>7.1f} {r.parts_ms['receive']:>7.1f} {r.doc_cpu_ms / base.doc_cpu_ms:>6.2f} | "
              f"{r.whole_bytes:>10} {r.whole_agent_ms:>9.1f} {r.delta_bytes:>8} {r.delta_agent_ms:>9.1f} "
              f"{r.hub_change_ms:>8.0f}")
    print("whole/delta: what one directory change costs each agent (bytes it receives, CPU ms to verify and take it);"
          " hub/chg: the hub's CPU ms per change (once, not per agent)")
    return [replace(r) for r in rows]


if __name__ == "__main__":
    main()
