"""`docex hub run`: the hub service in the foreground (for systemd). Intake consumers,
the dead-letter watcher, the scheduler, the read API and /metrics. With --workers N,
N-1 more processes compete for the ingress queue (the GIL makes threads no help)."""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import threading
from dataclasses import dataclass, replace
from multiprocessing.context import SpawnProcess
from pathlib import Path

from docex.broker import Consumer, Delivery
from docex.broker.topology import DEAD_QUEUE, INGRESS_QUEUE
from docex.hub import audit, broker
from docex.hub.config import HubConfig
from docex.hub.context import HubContext
from docex.hub.db import Database
from docex.hub.identity import HubIdentity
from docex.hub.intake import Intake
from docex.hub.jobs import HubJobs, Rollout, build_scheduler
from docex.hub.models import Rejection
from docex.hub.refusals import keep_bytes
from docex.monitoring.observer import NullObserver, Observer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    workers: int = 1
    consumer_threads: int = 4
    prefetch: int = 64
    api: bool = True
    api_port: int | None = None
    metrics_port: int | None = None  # None: from config; 0 with config 0: off
    scheduler: bool = True


def make_context(config: HubConfig, passphrase: bytes | None, observer: Observer | None = None) -> HubContext:
    from docex.hub.stamping import load_stamper

    return HubContext(config, Database(config.database_url), HubIdentity.load(config, passphrase),
                      observer or NullObserver(), stamper=load_stamper(config, passphrase))


class DeadLetters:
    """Poison messages: kept, recorded and audited, then acknowledged."""

    def __init__(self, ctx: HubContext) -> None:
        self.ctx = ctx

    def __call__(self, delivery: Delivery) -> None:
        kept = keep_bytes(self.ctx, delivery.body)
        reason = ""
        for death in (delivery.headers or {}).get("x-death", []) or []:
            reason = f"{death.get('queue')}: {death.get('reason')}"
            break
        with self.ctx.db.session() as s:
            s.add(Rejection(message_id=delivery.message_id or "", sender=delivery.user_id or "", code="dead_letter",
                            message=reason, kept_at=kept))
            audit.append(s, "hub", "message.dead_letter", delivery.message_id or "", reason=reason, kept_at=kept)
        self.ctx.observer.document_rejected("dead_letter")


def _ingress_consumer(ctx: HubContext, options: RunOptions, name: str) -> Consumer:
    return Consumer(broker.settings(ctx.config, prefetch=options.prefetch), INGRESS_QUEUE, Intake(ctx),
                    workers=options.consumer_threads, name=name)


def _worker_main(home: str, passphrase: bytes | None, options: RunOptions, index: int) -> None:
    """Worker process `index` (1..N-1). With metrics on (options.metrics_port resolved by
    the main process) it serves its own intake counters on metrics_port + index: one
    target per process, summed in PromQL; the status gauges come from the main process only."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s hub-worker-{index} %(levelname)s %(message)s")
    ctx = make_context(HubConfig.load(home), passphrase)
    metrics_server = None
    if options.metrics_port:
        from docex.monitoring.exporter import metrics_address, serve_metrics, service_metrics

        registry, ctx.observer = service_metrics("hub")
        metrics_server = serve_metrics(registry, *metrics_address("hub", port=options.metrics_port + index))
        log.info("hub worker %d metrics %s", index, metrics_server.url)
    consumer = _ingress_consumer(ctx, options, f"docex-hub-worker-{index}")

    def stop(*_: object) -> None:
        # A process-group SIGTERM and the parent's terminate() arrive together: a nested
        # handler call in the main thread could wait on a pika lock that thread holds.
        # Ignore the rest, and stop from another thread.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        threading.Thread(target=consumer.stop, name="docex-hub-worker-stop", daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        consumer.run()
    finally:
        if metrics_server is not None:
            metrics_server.stop()


class HubService:
    def __init__(self, config: HubConfig, passphrase: bytes | None, options: RunOptions | None = None,
                 rollout: Rollout | None = None) -> None:
        self.config = config
        self.passphrase = passphrase
        self.options = options or RunOptions()
        self.rollout = rollout
        self._stop = threading.Event()
        self.api_port: int | None = None
        self.metrics_url: str | None = None

    def stop(self) -> None:
        self._stop.set()

    def run(self, ready: threading.Event | None = None) -> None:
        metrics_port = self.options.metrics_port
        if metrics_port is None:
            metrics_port = self.config.metrics_port
        opts = replace(self.options, metrics_port=metrics_port)  # workers serve on port + index
        metrics_server = None
        ctx = make_context(self.config, self.passphrase)
        if metrics_port:
            from docex.hub.status import HubStatus
            from docex.monitoring.exporter import metrics_address, serve_metrics, service_metrics

            registry, ctx.observer = service_metrics("hub", HubStatus(ctx), cache_seconds=5.0)
            metrics_server = serve_metrics(registry, *metrics_address("hub", port=metrics_port))
            self.metrics_url = metrics_server.url
        broker.declare(self.config, links=tuple(ctx.links()))
        consumers = [
            _ingress_consumer(ctx, opts, "docex-hub-intake"),
            Consumer(broker.settings(self.config), DEAD_QUEUE, DeadLetters(ctx), workers=1, name="docex-hub-dead"),
        ]
        for consumer in consumers:
            consumer.start()
        procs: list[SpawnProcess] = []
        spawn = mp.get_context("spawn")
        for index in range(1, opts.workers):
            proc = spawn.Process(target=_worker_main, args=(str(self.config.home), self.passphrase, opts, index),
                                 name=f"docex-hub-worker-{index}", daemon=True)
            proc.start()
            procs.append(proc)
        jobs = HubJobs(ctx, rollout=self.rollout)
        scheduler = build_scheduler(jobs) if opts.scheduler else None
        if scheduler is not None:
            scheduler.start()
        api = None
        if opts.api:
            from docex.hub.api import ApiServer

            api = ApiServer(ctx, self.config.api.host, opts.api_port if opts.api_port is not None else self.config.api.port)
            api.start()
            self.api_port = api.port
        for consumer in consumers:
            consumer.wait_ready(30)
        metrics = self.metrics_url or "off"
        if self.metrics_url and opts.workers > 1:
            metrics += f" (worker processes on ports {metrics_port + 1}-{metrics_port + opts.workers - 1})"
        log.info("hub %s running: %d worker process(es), API %s, metrics %s", self.config.prefix, opts.workers,
                 f"http://{self.config.api.host}:{self.api_port}/" if api else "off", metrics)
        if ready is not None:
            ready.set()
        try:
            self._stop.wait()
        finally:
            for proc in procs:
                proc.terminate()
            if scheduler is not None:
                scheduler.shutdown(wait=False)
            for consumer in consumers:
                consumer.stop()
            for proc in procs:
                proc.join(10)
                if proc.is_alive():  # never hang the service's exit on a stuck worker
                    proc.kill()
                    proc.join(5)
            jobs.close()
            if api is not None:
                api.stop()
            if metrics_server is not None:
                metrics_server.stop()
            ctx.db.dispose()


def run_forever(home: str | Path, passphrase: bytes | None, options: RunOptions) -> None:
    service = HubService(HubConfig.load(home), passphrase, options)
    signal.signal(signal.SIGTERM, lambda *_: service.stop())
    signal.signal(signal.SIGINT, lambda *_: service.stop())
    service.run()
