"""Chaos soak: documents flow through a real hub and agents while faults are injected at
random, then every document is checked at every recipient.

    python -m bench.chaos                       # the full run: 10,000 documents x 3 recipients
    python -m bench.chaos --documents 600 --units 20 --fault-every 20   # about five minutes

Faults (a seeded random choice every --fault-every seconds, one at a time): SIGKILL and
restart of the hub, SIGKILL of one hub worker process (the hub restarts it), SIGSTOP of the
hub, SIGKILL and restart of a group of agents, every broker connection closed, the hub's
PostgreSQL stopped (an instance of the soak's own, on a port outside the ephemeral range)
and restarted, an agent's disk full until space returns. A 125-unit broadcast (or to every
unit the run has) goes every --broadcast-every documents.

At the end every document must be final at every recipient exactly once, byte for byte,
with its `delivered` receipt at the sender: the report says lost / duplicated / stuck.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from docex.agent.store import Received, SentRecipient
from docex.cli.localnet import LocalNetwork
from docex.hub import audit
from docex.hub.db import Database
from docex.hub.models import Delivery, Document, Rejection
from tests.e2e.outages import PrivatePostgres, SmallDisk
from tests.e2e.support import PREFIX, Network, county_units, wait_until

FAULTS = ("kill_hub", "kill_worker", "stop_hub", "kill_agents", "cut_connections", "db_outage", "disk_full")


@dataclass(frozen=True)
class ChaosConfig:
    documents: int = 10_000
    recipients: int = 3
    units: int = 125
    broadcast_every: int = 400
    fault_every: float = 45.0
    hub_workers: int = 2
    agents_per_process: int = 25
    stop_seconds: float = 60.0
    db_outage_seconds: float = 30.0
    disk_full_seconds: float = 60.0
    backlog: int = 300  # documents queued but not yet delivered everywhere, at most
    settle_seconds: float = 900.0  # after the last document: time to finish
    seed: int = 2011
    faults: tuple[str, ...] = FAULTS
    min_faults: int = 0  # keep injecting until this many, even when the stream has finished


@dataclass
class FaultRecord:
    kind: str
    at: float
    seconds: float  # how long the fault lasted (0 for a kill)
    recovered_after: float | None = None  # from the fault's end to the next delivery


@dataclass
class ChaosReport:
    documents: int
    deliveries: int
    seconds: float
    faults: list[FaultRecord] = field(default_factory=list)
    lost: int = 0
    duplicated: int = 0
    stuck: int = 0
    corrupted: int = 0
    receipts_missing: int = 0
    refusals: int = 0
    dead_letters: int = 0
    audit_ok: bool = False

    @property
    def ok(self) -> bool:
        return (self.lost, self.duplicated, self.stuck, self.corrupted, self.receipts_missing,
                self.refusals, self.dead_letters) == (0, 0, 0, 0, 0, 0, 0) and self.audit_ok

    def table(self) -> str:
        lines = [
            f"混沌测试 (chaos soak): {self.documents} documents, {self.deliveries} deliveries, "
            f"{self.seconds:.0f} s, {len(self.faults)} faults",
            f"{'fault':<16} {'count':>5} {'lasted s':>9} {'recovery mean s':>16} {'recovery max s':>15}",
        ]
        by_kind: dict[str, list[FaultRecord]] = defaultdict(list)
        for f in self.faults:
            by_kind[f.kind].append(f)
        for kind in FAULTS:
            rows = by_kind.get(kind, [])
            if not rows:
                continue
            rec = [f.recovered_after for f in rows if f.recovered_after is not None]
            mean = sum(rec) / len(rec) if rec else float("nan")
            lines.append(f"{kind:<16} {len(rows):>5} {sum(f.seconds for f in rows) / len(rows):>9.1f} "
                         f"{mean:>16.1f} {max(rec, default=float('nan')):>15.1f}")
        lines.append(f"lost / duplicated / stuck = {self.lost} / {self.duplicated} / {self.stuck}; "
                     f"corrupted {self.corrupted}, receipts missing {self.receipts_missing}, "
                     f"refusals {self.refusals}, dead letters {self.dead_letters}, "
                     f"audit chain {'intact' if self.audit_ok else 'BROKEN'}")
        return "\n".join(lines)

    def as_json(self) -> dict[str, object]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


class Soak:
    def __init__(self, cfg: ChaosConfig, root: Path, say=print) -> None:  # type: ignore[no-untyped-def]
        self.cfg = cfg
        self.root = root
        self.say = say
        self.rng = random.Random(cfg.seed)
        self.pg: PrivatePostgres | None = None
        self.net: Network | None = None
        self.disk: SmallDisk | None = None
        self.expected: dict[str, tuple[str, tuple[str, ...], dict[str, str]]] = {}  # id -> sender, to, digests
        self.faults: list[FaultRecord] = []
        self._owed = 0  # deliveries owed by the documents queued so far
        self._stop = threading.Event()
        self._fault_lock = threading.Lock()

    # -- set-up and tear-down -----------------------------------------------------------------
    def start(self) -> Network:
        cfg = self.cfg
        self.pg = PrivatePostgres.create()
        rows = county_units(cfg.units)
        tag = f"chaos{uuid.uuid4().hex[:6]}"
        local = LocalNetwork.create(self.root / "net", PREFIX, rows, name="阳山县电子公文交换中心", tag=tag,
                                    database_url=self.pg.url)
        self.net = net = Network(local, Database(local.config.database_url))
        self.disk_unit = rows[-1].address
        self.disk = SmallDisk(net.home(self.disk_unit) / "inbox", size="64m")
        net.start_hub(workers=cfg.hub_workers)
        net.start_agents(per_process=cfg.agents_per_process)
        return net

    def close(self) -> None:
        if self.net is not None:
            self.net.recover(hub=False)
            self.net.close()
        if self.disk is not None:
            self.disk.free()
            self.disk.unmount()
        if self.pg is not None:
            self.pg.destroy()

    # -- the stream ----------------------------------------------------------------------------
    def _delivered(self) -> int:
        assert self.net is not None
        try:
            return self.net.count(Delivery, Delivery.state == "delivered")
        except Exception:  # noqa: BLE001 - the database may be the fault right now
            return -1

    def feed(self) -> None:
        """Queue every document, keeping the backlog bounded (a real county's rate)."""
        cfg, net = self.cfg, self.net
        assert net is not None
        addresses = net.addresses
        delivered = owed = 0
        for i in range(cfg.documents):
            if cfg.broadcast_every and i and i % cfg.broadcast_every == 0:
                sender = addresses[0]
                to = tuple(a for a in addresses if a != sender)
            else:
                sender = self.rng.choice(addresses)
                to = tuple(self.rng.sample([a for a in addresses if a != sender], cfg.recipients))
            while owed - delivered > cfg.backlog * cfg.recipients and not self._stop.is_set():
                time.sleep(0.5)
                now = self._delivered()
                delivered = now if now >= 0 else delivered
            files = {"正文.txt": f"混沌测试第{i}号\n".encode(), "附件.bin": os.urandom(self.rng.randint(200, 4000))}
            mid, _ = net.send(sender, to, files=files, doc_number=f"阳混〔2011〕{i}号")
            owed += len(to)
            self._owed = owed  # before the document counts as queued (see _finished)
            self.expected[mid] = (sender, to, {k: hashlib.sha256(v).hexdigest() for k, v in files.items()})
            if i % 500 == 0:
                self.say(f"  queued {i}/{cfg.documents}, deliveries done {delivered}")

    # -- faults --------------------------------------------------------------------------------
    def _hub_workers(self) -> list[int]:
        assert self.net is not None
        hub = self.net.net.procs.get("hub")
        if hub is None:
            return []
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[1]) == hub.pid and b"multiprocessing" in cmd and b"resource_tracker" not in cmd:
                pids.append(int(entry.name))
        return pids

    def inject(self, kind: str) -> FaultRecord:
        cfg, net = self.cfg, self.net
        assert net is not None and self.pg is not None and self.disk is not None
        began = time.monotonic()
        if kind == "kill_hub":
            net.kill("hub")
            net.start_hub(workers=cfg.hub_workers)
        elif kind == "kill_worker":
            workers = self._hub_workers()
            if workers:
                os.kill(self.rng.choice(workers), signal.SIGKILL)
        elif kind == "stop_hub":
            net.pause("hub")
            try:
                self._stop.wait(cfg.stop_seconds)
            finally:
                net.resume("hub")
        elif kind == "kill_agents":
            groups = sorted(set(net.hosts.values()))
            name = self.rng.choice(groups)
            members = [a for a, host in net.hosts.items() if host == name]
            net.kill(name)
            net.start_agents(members, per_process=len(members))
        elif kind == "cut_connections":
            with net.management() as mgmt:
                for conn in mgmt.list_connections(net.config.broker.vhost):
                    mgmt.close_connection(conn.name, "docex chaos: connections cut")
        elif kind == "db_outage":
            self.pg.stop()
            try:
                self._stop.wait(cfg.db_outage_seconds)
            finally:
                self.pg.start()
        elif kind == "disk_full":
            try:
                self.disk.fill()
                self._stop.wait(cfg.disk_full_seconds)
            finally:
                self.disk.free()
        record = FaultRecord(kind, began, time.monotonic() - began)
        before = self._delivered()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not self._stop.is_set():
            now = self._delivered()
            if now > before >= 0 or (before < 0 <= now):
                record.recovered_after = time.monotonic() - began - record.seconds
                break
            if self._finished():
                break
            time.sleep(0.2)
        return record

    def fault_loop(self) -> None:
        order: list[str] = []
        while not self._stop.wait(self.cfg.fault_every * (0.5 + self.rng.random())):
            if not order:  # every kind once, in a random order, then again
                order = list(self.cfg.faults)
                self.rng.shuffle(order)
            kind = order.pop()
            self.say(f"  fault: {kind}")
            try:
                self.faults.append(self.inject(kind))
            except Exception as exc:  # noqa: BLE001 - report it, keep soaking
                self.say(f"  fault {kind} could not be injected: {exc}")

    def _finished(self) -> bool:
        # The fault thread asks while the sending loop still adds documents: it reads the
        # count the loop keeps, never iterates `expected` (which changes size meanwhile).
        return len(self.expected) >= self.cfg.documents and self._delivered() >= self._owed

    def _done(self) -> bool:
        return len(self.faults) >= self.cfg.min_faults and self._finished()

    # -- the check -----------------------------------------------------------------------------
    def _receipts_missing(self) -> int:
        assert self.net is not None
        by_sender: dict[str, list[str]] = defaultdict(list)
        for mid, (sender, _, _) in self.expected.items():
            by_sender[sender].append(mid)
        missing = 0
        for sender, mids in by_sender.items():
            with self.net.agent(sender).store.session() as s:
                rows = s.execute(select(SentRecipient.message_id, SentRecipient.recipient, SentRecipient.state)
                                 .where(SentRecipient.message_id.in_(mids))).all()
            good = {(m, r) for m, r, st in rows if st == "delivered"}
            missing += sum(1 for mid in mids for r in self.expected[mid][1] if (mid, r) not in good)
        return missing

    def check(self, seconds: float) -> ChaosReport:
        net = self.net
        assert net is not None
        ids = list(self.expected)
        owed = {(mid, r) for mid, (_, to, _) in self.expected.items() for r in to}
        report = ChaosReport(documents=len(ids), deliveries=len(owed), seconds=seconds, faults=self.faults)
        with net.db.read() as s:
            states = dict(((m, r), st) for m, r, st in s.execute(
                select(Delivery.message_id, Delivery.recipient, Delivery.state)).all())
            report.refusals = int(s.execute(select(func.count()).select_from(Rejection)
                                            .where(Rejection.message_id.in_(ids))).scalar_one())
            report.dead_letters = int(s.execute(select(func.count()).select_from(Rejection)
                                                .where(Rejection.code == "dead_letter")).scalar_one())
            accepted = int(s.execute(select(func.count()).select_from(Document)
                                     .where(Document.message_id.in_(ids))).scalar_one())
            report.audit_ok = audit.verify_chain(s).ok
        report.stuck = sum(1 for key in owed if states.get(key) != "delivered") + (len(ids) - accepted)
        by_recipient: dict[str, set[str]] = defaultdict(set)
        for mid, r in owed:
            by_recipient[r].add(mid)
        for address, wanted in by_recipient.items():
            with net.agent(address).store.session() as s:
                got = list(s.execute(select(Received.message_id).where(Received.message_id.in_(wanted))).scalars())
            report.lost += len(wanted - set(got))
            report.duplicated += len(got) - len(set(got))
            inbox = net.home(address) / "inbox"
            for mid in wanted & set(got):
                digests = self.expected[mid][2]
                for name, digest in digests.items():
                    path = inbox / mid / name
                    if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                        report.corrupted += 1
        report.receipts_missing = self._receipts_missing()
        return report

    # -- the whole run ---------------------------------------------------------------------------
    def run(self) -> ChaosReport:
        began = time.monotonic()
        self.start()
        net = self.net
        assert net is not None
        faults = threading.Thread(target=self.fault_loop, name="chaos-faults", daemon=True)
        faults.start()
        try:
            self.feed()
            self.say(f"  all {len(self.expected)} documents queued; waiting for the stream to finish")
            try:
                wait_until(self._done, self.cfg.settle_seconds, "every delivery done", interval=2.0)
            except AssertionError:
                pass  # what did not finish is counted as stuck
        finally:
            self._stop.set()
            faults.join(self.cfg.stop_seconds + self.cfg.db_outage_seconds + 330)
            net.recover(hub=False)
        if self.pg is not None:
            try:
                self.pg.start()
            except Exception:  # noqa: BLE001 - it was running
                pass
        if self.disk is not None:
            self.disk.free()
        # Let receipts that were in flight at the end arrive before counting them.
        try:
            wait_until(lambda: self._receipts_missing() == 0, 120, "receipts at the senders", interval=2.0)
        except AssertionError:
            pass
        return self.check(time.monotonic() - began)


def soak(cfg: ChaosConfig, say=print) -> ChaosReport:  # type: ignore[no-untyped-def]
    root = Path(tempfile.mkdtemp(prefix="docex-chaos-"))
    runner = Soak(cfg, root, say)
    try:
        return runner.run()
    finally:
        runner.close()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    d = ChaosConfig()
    ap.add_argument("--documents", type=int, default=d.documents)
    ap.add_argument("--units", type=int, default=d.units)
    ap.add_argument("--recipients", type=int, default=d.recipients)
    ap.add_argument("--broadcast-every", type=int, default=d.broadcast_every)
    ap.add_argument("--fault-every", type=float, default=d.fault_every, help="mean seconds between faults")
    ap.add_argument("--stop-seconds", type=float, default=d.stop_seconds)
    ap.add_argument("--db-outage-seconds", type=float, default=d.db_outage_seconds)
    ap.add_argument("--disk-full-seconds", type=float, default=d.disk_full_seconds)
    ap.add_argument("--agents-per-process", type=int, default=d.agents_per_process)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    cfg = ChaosConfig(documents=args.documents, units=args.units, recipients=args.recipients,
                      broadcast_every=args.broadcast_every, fault_every=args.fault_every,
                      stop_seconds=args.stop_seconds, db_outage_seconds=args.db_outage_seconds,
                      disk_full_seconds=args.disk_full_seconds, agents_per_process=args.agents_per_process,
                      seed=args.seed)
    report = soak(cfg, say=lambda m: print(m, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
    else:
        print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
