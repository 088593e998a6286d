"""Where the end-to-end time goes: py-spy samples every process of a loaded network.

    python -m bench.profile_e2e [--recipients 1] [--seconds 20] [--hub-workers 2] [--out DIR]

Builds the network of ``bench.e2e`` (hub subprocess, recipient agent subprocesses, the
sender in this process), keeps it at max throughput, and samples the hub, the recipients
and the sender with ``py-spy record --format raw`` (on-CPU samples only; py-spy must be
installed: ``pip install py-spy``, and may need root or ptrace rights). Prints, per process,
the share of CPU samples by library (the deepest frame's package: cryptography, asn1crypto,
sqlalchemy, sqlite3, pika, json, ...) and the docex functions that hold the most samples
(inclusive). Flame graphs (SVG) of each process are written to ``--out``.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.e2e import FULL, Network, Sender

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _group(path: str) -> str:
    """The package of a source file as py-spy names it: "docex/hub/intake.py" -> docex.hub.intake,
    "sqlalchemy/orm/session.py" -> sqlalchemy, "threading.py" -> threading."""
    parts = Path(path).parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    if "docex" in parts:
        rest = parts[parts.index("docex") :]
        return ".".join(p.removesuffix(".py") for p in rest[:3])
    return parts[0].removesuffix(".py") if parts else path


def summarise(raw: Path, top: int = 12) -> str:
    """Self samples by package, and inclusive samples of docex functions."""
    by_pkg: collections.Counter[str] = collections.Counter()
    docex_incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text("utf-8", errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = []
        for f in stack.split(";"):
            m = _FRAME.match(f)
            if m:
                frames.append((m["func"], m["file"]))
        if not frames:
            continue
        by_pkg[_group(frames[-1][1])] += count
        seen = set()
        for func, path in frames:
            if path.startswith("docex/") or "/docex/" in path:
                key = f"{_group(path)}.{func}"
                if key not in seen:
                    seen.add(key)
                    docex_incl[key] += count
    if not total:
        return "  (no samples)"
    lines = [f"  {total} on-CPU samples; self time by package:"]
    lines += [f"    {n / total:6.1%}  {k}" for k, n in by_pkg.most_common(top)]
    lines.append("  docex functions, inclusive:")
    lines += [f"    {n / total:6.1%}  {k}" for k, n in docex_incl.most_common(top)]
    return "\n".join(lines)


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the hub's worker processes)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += [c for c, pp in parents.items() if pp == p]
    return out


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU seconds of a process (and its descendants), from /proc."""
    total = 0
    for p in _tree(pid) if children else [pid]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def _spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.profile_e2e", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--recipients", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--hub-workers", type=int, default=FULL.hub_workers)
    ap.add_argument("--window", type=int, default=FULL.window)
    ap.add_argument(
        "--rate", type=float, default=0.0, help="documents/s open loop (0: max throughput)"
    )
    ap.add_argument("--per-process", type=int, default=1, help="agents per process (125 units: 16)")
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated processes to sample (default: all), e.g. hub,agents-0",
    )
    ap.add_argument("--out", default="/tmp/docex-e2e-profile")
    ap.add_argument(
        "--no-spy", action="store_true", help="CPU accounting only (no sampling overhead)"
    )
    args = ap.parse_args(argv)
    spy = _spy()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    with Network(
        max(args.recipients, 1), hub_workers=args.hub_workers, per_process=args.per_process
    ) as net:
        assert net.sender is not None
        sender: Sender = net.sender
        to = net.recipients[: args.recipients]
        stop = threading.Event()
        sent = [0]

        def load() -> None:
            tracker = sender.tracker
            t0 = time.monotonic()
            while not stop.is_set():
                if args.rate:
                    delay = t0 + sent[0] / args.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                else:
                    tracker.wait(
                        lambda: len(tracker.waiting) < args.window or stop.is_set(), 120, "a slot"
                    )
                if not stop.is_set():
                    sender.send(to)
                    sent[0] += 1

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        time.sleep(3)  # into the steady state
        targets = {"sender": os.getpid(), **net.pids()}
        done_before = len(sender.tracker.done_at)
        cpu0 = {name: cpu_seconds(pid, children=name != "sender") for name, pid in targets.items()}
        busy0, total0 = machine_busy()
        t0 = time.monotonic()
        if args.no_spy:
            time.sleep(args.seconds)
        else:
            spies = []
            sampled = {
                n: p for n, p in targets.items() if not args.only or n in args.only.split(",")
            }
            for name, pid in sampled.items():
                # The sender is this process: its children are the hub and the agents.
                sub = [] if name == "sender" else ["--subprocesses"]
                for fmt, ext in (("raw", "txt"), ("flamegraph", "svg")):
                    spies.append(
                        subprocess.Popen(
                            [
                                spy,
                                "record",
                                "--pid",
                                str(pid),
                                *sub,
                                "--gil",
                                "--rate",
                                "100",
                                "--duration",
                                str(int(args.seconds)),
                                "--format",
                                fmt,
                                "-o",
                                str(out / f"{name}.{ext}"),
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    )
            for proc in spies:
                proc.wait()
        elapsed = time.monotonic() - t0
        done = len(sender.tracker.done_at) - done_before
        cpu = {
            name: cpu_seconds(pid, children=name != "sender") - cpu0[name]
            for name, pid in targets.items()
        }
        busy1, total1 = machine_busy()
        stop.set()
        loader.join(30)
        print(
            f"{done} documents receipted in {elapsed:.1f}s ({done / elapsed:.1f}/s) to {len(to)} recipient(s); "
            f"machine {os.cpu_count()} CPUs {100 * (busy1 - busy0) / max(total1 - total0, 1):.0f}% busy"
        )
        print("CPU ms per document, by process:")
        for name, used in sorted(cpu.items(), key=lambda kv: -kv[1]):
            print(
                f"  {1000 * used / max(done, 1):8.1f}  {name}  ({100 * used / elapsed:.0f}% of a core)"
            )
        if args.no_spy:
            return 0
        print(f"flame graphs in {out}/")
        for name in targets:
            print(f"\n== {name} ==")
            raw = out / f"{name}.txt"
            print(summarise(raw) if raw.exists() else "  (py-spy wrote nothing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
