"""The fuzzing harness shared by `test_fuzz_*.py`: one property for every parser of what a
peer sends (envelope, routing header, manifest, package, receipt, notice, directory
snapshot, TSA request, unit CSV): any input either parses or raises the project's named
error (PkiError/DocexError with a code in the catalogue), never another exception, never a
hang (hypothesis' per-example deadline).

`make test` runs each target for a bounded number of examples. `make fuzz` sets
DOCEX_FUZZ_SECONDS (the whole run, shared out evenly among the targets): each target then
runs fresh random searches until its share is spent, counting executions and keeping every
crasher instead of stopping at the first; the terminal summary lists both."""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from docex.pki.errors import PkiError
from docex.protocols.errors import CODES

FUZZ_SECONDS = float(os.environ.get("DOCEX_FUZZ_SECONDS", "0") or 0)
BOUNDED_EXAMPLES = int(os.environ.get("DOCEX_FUZZ_EXAMPLES", "60"))
# One input taking longer than this is a hang. The long run is niced on a shared machine,
# where a process may wait seconds for a core: there, a hang is a minute.
DEADLINE_MS = 60_000 if FUZZ_SECONDS > 0 else 5000
CRASH_LOG = os.environ.get("DOCEX_FUZZ_CRASH_LOG", "")  # each crasher appended as found


@dataclass
class Tally:
    executions: int = 0
    crashers: list[str] = field(default_factory=list)
    seconds: float = 0.0


TALLIES: dict[str, Tally] = {}
TARGET_COUNT = [1]  # set by the conftest from the collected fuzz targets


def named_error(exc: BaseException) -> bool:
    return isinstance(exc, PkiError) and exc.code in CODES


def expect_parse_or_named_error(parse: Callable[[], Any]) -> Any:
    """Run one parse; a named refusal is a pass, anything else propagates as a crasher."""
    try:
        return parse()
    except PkiError as exc:
        assert exc.code in CODES, f"unnamed error code {exc.code!r}"
        return None


def _settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=DEADLINE_MS,
        database=None,  # every run a fresh search; crashers are reported, not replayed
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        print_blob=True,
    )


def fuzz(name: str, target: Callable[..., None]) -> None:
    """Run a hypothesis-decorated `target` (without settings) as the bounded test, or, under
    `make fuzz`, again and again until its share of DOCEX_FUZZ_SECONDS is spent."""
    tally = TALLIES.setdefault(name, Tally())
    inner = target.hypothesis.inner_test

    def counted(*args: Any, **kwargs: Any) -> None:
        tally.executions += 1
        inner(*args, **kwargs)

    target.hypothesis.inner_test = counted  # type: ignore[attr-defined]
    start = time.monotonic()
    try:
        if FUZZ_SECONDS <= 0:
            try:
                _settings(BOUNDED_EXAMPLES)(target)()
            except Exception as exc:
                tally.crashers.append(f"{type(exc).__name__}: {exc}")
                raise
            return
        budget = FUZZ_SECONDS / max(1, TARGET_COUNT[0])
        run = _settings(200)(target)
        while time.monotonic() - start < budget:
            try:
                run()
            except Exception as exc:  # noqa: BLE001 - a crasher: keep it and go on searching
                tally.crashers.append(describe(exc)[:8000])
                if CRASH_LOG:
                    with open(CRASH_LOG, "a", encoding="utf-8") as fh:
                        fh.write(f"== {name}\n{tally.crashers[-1]}\n")
        assert not tally.crashers, f"{len(tally.crashers)} crasher(s) in {name}:\n" + "\n---\n".join(tally.crashers[:5])
    finally:
        tally.seconds += time.monotonic() - start
        target.hypothesis.inner_test = inner  # type: ignore[attr-defined]


def describe(exc: BaseException) -> str:
    """A crasher as someone fixing it needs it: each distinct failure hypothesis found (it
    groups them), where it was raised, and its falsifying example."""
    if isinstance(exc, BaseExceptionGroup):
        return "\n---\n".join(describe(sub) for sub in exc.exceptions)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    notes = "\n".join(getattr(exc, "__notes__", []))
    return f"{type(exc).__name__}: {exc}{where}\n{notes}"


# -- strategies shared by the targets ---------------------------------------------------------
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def shaped(good: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects with the expected keys, each present or not, each well typed or not,
    and the odd key nobody expects."""
    fields = {k: st.one_of(v, v, json_values) for k, v in good.items()}
    return st.one_of(
        st.fixed_dictionaries(fields),
        st.fixed_dictionaries({}, optional={**fields, "extra": json_values}),
        st.dictionaries(st.text(max_size=12), json_values, max_size=6),
    )


def mutations(genuine: bytes) -> st.SearchStrategy[bytes]:
    """Genuine bytes changed the way a damaged or tampered message is: flipped bytes,
    truncated, extended, a slice cut out or repeated, or garbage."""
    n = len(genuine)

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(genuine)
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["flip", "set", "truncate", "append", "cut", "repeat"]))
            if not data:
                break
            i = draw(st.integers(0, len(data) - 1))
            if kind == "flip":
                data[i] ^= 1 << draw(st.integers(0, 7))
            elif kind == "set":
                data[i] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF, 0x30, 0x04, 0x02]))
            elif kind == "truncate":
                del data[i:]
            elif kind == "append":
                data += draw(st.binary(max_size=32))
            elif kind == "cut":
                del data[i : i + draw(st.integers(1, 64))]
            else:
                j = min(len(data), i + draw(st.integers(1, 64)))
                data[i:i] = data[i:j]
        return bytes(data)

    return st.one_of(mutate(), st.binary(max_size=min(n, 4096)))
