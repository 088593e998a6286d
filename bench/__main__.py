"""``python -m bench [suite ...] [--quick] [--json]``: run benchmark suites, print tables.

Contract for a suite: a module ``bench/<name>.py`` listed in ``SUITES`` with

    def run(quick: bool) -> list[Result]      # ``quick``: seconds, not minutes
    TITLE = "..."                             # optional table title
    BASELINE = "bare_choreography"            # optional default ratio baseline (a row name)

Compare with raw baselines measured in the same run: call
``bench.baselines.measured(name, quick)`` (memoised per process) or
``bench.crypto_baseline.run``, put that Result in the returned list and name it in
``Result.baseline`` (or ``BASELINE``). Rows of earlier suites of the run are known too.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback
from types import ModuleType

from bench.harness import Result, print_table, results_json

# name -> module; modules not written yet are skipped with a note.
SUITES: dict[str, str] = {
    "baselines": "bench.baselines",
    "crypto": "bench.crypto_baseline",
    "envelope": "bench.envelope",
    "e2e": "bench.e2e",
    "capacity": "bench.capacity",
    "seal": "bench.seal",
    "link": "bench.link",
}


def _load(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise


def _load_note() -> str:
    """Machines here are shared: say how busy this one was, since it moves every number."""
    cpus = os.cpu_count() or 1
    one, five, _ = os.getloadavg()
    note = f"{cpus} CPUs, load average {one:.1f} (1 min) {five:.1f} (5 min)"
    if one > cpus * 0.75:
        note += " -- 机器繁忙 busy machine: compare ratios, not absolute rates"
    return note


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description="docex 基准测试 (benchmarks): tables with a ratio against raw baselines.",
    )
    ap.add_argument(
        "suites", nargs="*", metavar="suite", help=f"any of: {', '.join(SUITES)} (default: all)"
    )
    ap.add_argument("--quick", action="store_true", help="small counts: seconds, not minutes")
    ap.add_argument(
        "--json", action="store_true", help="print results as JSON on stdout (tables go to stderr)"
    )
    args = ap.parse_args(argv)

    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        ap.error(f"unknown suite(s): {', '.join(unknown)}; known: {', '.join(SUITES)}")
    names = args.suites or list(SUITES)
    out = sys.stderr if args.json else sys.stdout

    load = _load_note()
    print(f"docex bench{' --quick' if args.quick else ''}: {load}", file=out)

    done: dict[str, list[Result]] = {}
    known: list[Result] = []
    failed: list[str] = []
    for name in names:
        try:
            mod = _load(SUITES[name])
            if mod is None:
                print(f"\n== {name} == 跳过 (skipped): {SUITES[name]} not written yet", file=out)
                continue
            rows = mod.run(args.quick)
        except Exception:
            failed.append(name)
            print(f"\n== {name} == 失败 (failed):", file=out)
            traceback.print_exc(file=out)
            continue
        done[name] = rows
        title = getattr(mod, "TITLE", name)
        print_table(title, rows, getattr(mod, "BASELINE", None), known=known, file=out)
        known.extend(rows)

    if args.json:
        doc = results_json(done)
        doc["quick"] = args.quick
        doc["load"] = load
        doc["failed"] = failed
        json.dump(doc, sys.stdout, ensure_ascii=False, indent=2)
        print()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
