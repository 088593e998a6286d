"""Small helpers every bench suite shares: results, tables, percentiles, a throwaway vhost.

A suite module is ``bench/<name>.py`` exposing ``run(quick: bool) -> list[Result]`` and is
listed in ``bench.__main__.SUITES``. Machines here are noisy, so a suite compares its numbers
with raw baselines measured in the same run (``bench.baselines.measured``) through
``Result.baseline`` and the ratio column of :func:`print_table`; tests never assert timings.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO
from urllib.parse import quote

import requests

MGMT_URL = "http://127.0.0.1:15672"
AMQP_HOST = "127.0.0.1"
AMQP_PORT = 5672
GUEST = ("guest", "guest")


@dataclass
class Result:
    """One measured line: ``count`` things done in ``seconds``; ``extra`` holds side numbers
    (latency percentiles, MB/s, ...). ``baseline`` names the result this one is compared to."""

    name: str
    count: int
    seconds: float
    unit: str = "docs/s"
    extra: dict[str, Any] = field(default_factory=dict)
    baseline: str | None = None

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rate"] = self.rate
        return d


def percentiles(values: Sequence[float], ps: Sequence[float] = (50, 99)) -> dict[str, float]:
    """Nearest-rank percentiles, keyed ``p50``, ``p99``...; empty input gives NaN."""
    out: dict[str, float] = {}
    ordered = sorted(values)
    for p in ps:
        key = f"p{p:g}"
        if not ordered:
            out[key] = math.nan
            continue
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        out[key] = ordered[min(rank, len(ordered)) - 1]
    return out


def timed(fn: Callable[[], Any], count: int) -> float:
    """Seconds to call ``fn`` ``count`` times."""
    t0 = time.perf_counter()
    for _ in range(count):
        fn()
    return time.perf_counter() - t0


def _fmt_num(x: float) -> str:
    if math.isnan(x) or math.isinf(x):
        return str(x)
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _fmt_extra(extra: dict[str, Any]) -> str:
    parts = []
    for k, v in extra.items():
        parts.append(f"{k}={_fmt_num(v) if isinstance(v, float) else v}")
    return " ".join(parts)


def print_table(
    title: str,
    rows: Sequence[Result],
    baseline: Result | str | None = None,
    *,
    known: Sequence[Result] = (),
    file: TextIO | None = None,
) -> None:
    """Print an aligned table. The ratio column is ``rate / baseline rate``: ``baseline`` (a
    Result or the name of one in ``rows``/``known``) applies to every row without its own
    ``Result.baseline``; rows naming a baseline that is not found show ``-``."""
    out = file or sys.stdout
    pool = {r.name: r for r in [*known, *rows]}
    if isinstance(baseline, Result):
        pool.setdefault(baseline.name, baseline)
    default = baseline.name if isinstance(baseline, Result) else baseline

    header = ["name", "count", "seconds", "rate", "unit", "ratio", "vs", "extra"]
    table = [header]
    for r in rows:
        base_name = r.baseline or default
        base = pool.get(base_name) if base_name else None
        if base is None or base is r:
            ratio, vs = "-", ""
        else:
            ratio, vs = f"{r.rate / base.rate:.2f}x", base.name
        table.append(
            [
                r.name,
                str(r.count),
                f"{r.seconds:.3f}",
                _fmt_num(r.rate),
                r.unit,
                ratio,
                vs,
                _fmt_extra(r.extra),
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    right = {1, 2, 3, 5}
    print(f"\n== {title} ==", file=out)
    for i, row in enumerate(table):
        cells = [
            c.rjust(w) if j in right else c.ljust(w)
            for j, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip(), file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)
    out.flush()


# -- RabbitMQ: one fresh vhost per measurement, so runs never disturb each other ------------


def _mgmt(method: str, path: str, **kw: Any) -> requests.Response:
    resp = requests.request(method, f"{MGMT_URL}/api/{path}", auth=GUEST, timeout=30, **kw)
    resp.raise_for_status()
    return resp


@contextlib.contextmanager
def temp_vhost(prefix: str = "docex-bench") -> Iterator[str]:
    """Create a uniquely named vhost (guest has full rights on it), yield its name, delete it
    afterwards whatever happened (deleting it also closes any connection still on it)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    q = quote(name, safe="")
    _mgmt("PUT", f"vhosts/{q}", json={"description": "docex bench/test, temporary"})
    try:
        _mgmt(
            "PUT",
            f"permissions/{q}/guest",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        )
        yield name
    finally:
        with contextlib.suppress(requests.RequestException):
            requests.delete(f"{MGMT_URL}/api/vhosts/{q}", auth=GUEST, timeout=30)


def results_json(suites: dict[str, list[Result]]) -> dict[str, Any]:
    """The ``--json`` document: machine facts and each suite's results."""
    import os
    import platform

    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "suites": {name: [r.to_dict() for r in rows] for name, rows in suites.items()},
    }
