"""`docex hub run`: the hub service in the foreground (for systemd). Intake consumers,
the dead-letter watcher, the scheduler, the read API and /metrics. With --workers N,
N-1 more processes compete for the ingress queue (the GIL makes threads no help)."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import threading
from dataclasses import dataclass, replace
from multiprocessing.context import SpawnProcess
from pathlib import Path

from docex.broker import Consumer
from docex.broker.topology import DEAD_QUEUE, INGRESS_QUEUE, RECEIPTS_QUEUE
from docex.hub import broker
from docex.hub.config import HubConfig
from docex.hub.context import HubContext
from docex.hub.db import Database
from docex.hub.dead_letters import DeadLetters
from docex.hub.identity import HubIdentity
from docex.hub.intake import Intake
from docex.hub.jobs import HubJobs, Rollout, build_scheduler
from docex.monitoring.observer import NullObserver, Observer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    workers: int = 1
    consumer_threads: int = 4
    prefetch: int = 64
    batch: int = 16  # most messages one intake transaction takes (1: one by one)
    api: bool = True
    api_port: int | None = None
    metrics_port: int | None = None  # None: from config; 0 with config 0: off
    scheduler: bool = True


def make_context(config: HubConfig, passphrase: bytes | None, observer: Observer | None = None) -> HubContext:
    from docex.hub.stamping import load_stamper

    return HubContext(config, Database(config.database_url), HubIdentity.load(config, passphrase),
                      observer or NullObserver(), stamper=load_stamper(config, passphrase))


def _ingress_consumers(ctx: HubContext, options: RunOptions, name: str) -> list[Consumer]:
    """Documents, and receipts/notices in a queue of their own (one intake serves both)."""
    intake = Intake(ctx)
    # Batches: what already waits is handled together (one transaction, one audit append,
    # one confirmed publication); alone, a message goes alone, so there is no added wait.
    return [
        Consumer(broker.settings(ctx.config, prefetch=options.prefetch), INGRESS_QUEUE, intake,
                 workers=options.consumer_threads, name=name, batch=intake.batch, batch_size=options.batch),
        Consumer(broker.settings(ctx.config, prefetch=options.prefetch), RECEIPTS_QUEUE, intake,
                 workers=max(1, options.consumer_threads // 2), name=f"{name}-receipts", batch=intake.batch,
                 batch_size=options.batch),
    ]


def _worker_main(home: str, passphrase: bytes | None, options: RunOptions, index: int, parent: int) -> None:
    """Worker process `index` (1..N-1). With metrics on (options.metrics_port resolved by
    the main process) it serves its own intake counters on metrics_port + index: one
    target per process, summed in PromQL; the status gauges come from the main process only.
    It stops by itself when its main process is gone: a worker never outlives its hub."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s hub-worker-{index} %(levelname)s %(message)s")
    ctx = make_context(HubConfig.load(home), passphrase)
    metrics_server = None
    if options.metrics_port:
        from docex.monitoring.exporter import metrics_address, serve_metrics, service_metrics

        registry, ctx.observer = service_metrics("hub")
        metrics_server = serve_metrics(registry, *metrics_address("hub", port=options.metrics_port + index))
        log.info("hub worker %d metrics %s", index, metrics_server.url)
    consumers = _ingress_consumers(ctx, options, f"docex-hub-worker-{index}")
    stopping = threading.Event()

    def stop(*_: object) -> None:
        # A process-group SIGTERM and the parent's terminate() arrive together: ignore the
        # rest, and let the main thread stop the consumers.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for consumer in consumers:
        consumer.start()
    try:
        while not stopping.wait(1.0):
            if os.getppid() != parent:  # the main process died (SIGKILL): we were orphaned
                log.warning("hub worker %d: 主进程已退出, 停止 (main process gone; stopping)", index)
                break
    finally:
        for consumer in consumers:
            consumer.stop()
        if metrics_server is not None:
            metrics_server.stop()
        ctx.db.dispose()


class WorkerSupervisor:
    """The hub's worker processes: started, watched, and restarted when one dies."""

    def __init__(self, home: Path, passphrase: bytes | None, options: RunOptions) -> None:
        self.home, self.passphrase, self.options = home, passphrase, options
        self.procs: list[SpawnProcess] = []
        self.restarts = 0
        self._spawn = mp.get_context("spawn")

    def _process(self, index: int) -> SpawnProcess:
        proc = self._spawn.Process(target=_worker_main,
                                   args=(str(self.home), self.passphrase, self.options, index, os.getpid()),
                                   name=f"docex-hub-worker-{index}", daemon=True)
        proc.start()
        return proc

    def start(self) -> None:
        self.procs[:] = [self._process(index) for index in range(1, self.options.workers)]

    def check(self) -> None:
        """Restart every worker that is no longer alive (called about once a second)."""
        for slot, proc in enumerate(self.procs):
            if proc.is_alive():
                continue
            index = slot + 1
            log.warning("hub worker %d 已退出 (exit code %s), 重新启动 (restarting)", index, proc.exitcode)
            proc.join(0)
            self.procs[slot] = self._process(index)
            self.restarts += 1


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
            *_ingress_consumers(ctx, opts, "docex-hub-intake"),
            Consumer(broker.settings(self.config), DEAD_QUEUE, DeadLetters(ctx), workers=1, name="docex-hub-dead"),
        ]
        for consumer in consumers:
            consumer.start()
        workers = WorkerSupervisor(self.config.home, self.passphrase, opts)
        workers.start()
        procs = workers.procs
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
                 f"{'https' if api.tls else 'http'}://{self.config.api.host}:{self.api_port}/" if api else "off", metrics)
        if ready is not None:
            ready.set()
        try:
            while not self._stop.wait(1.0):
                workers.check()
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
