"""Smoke tests for the bench harness and raw baselines: they run and give sane numbers.

Timings are never asserted: only counts, shapes and that rates are positive and finite.
"""

from __future__ import annotations

import io
import json
import math

import pytest
import requests

from bench import __main__ as bench_main
from bench import baselines, crypto_baseline
from bench.harness import GUEST, MGMT_URL, Result, percentiles, print_table, temp_vhost


def _sane(r: Result) -> None:
    assert r.count > 0
    assert r.seconds > 0
    assert math.isfinite(r.rate) and r.rate > 0


def test_result_rate_and_dict() -> None:
    r = Result("x", 200, 4.0, extra={"p50_ms": 1.5})
    assert r.rate == 50
    d = r.to_dict()
    assert d["rate"] == 50 and d["unit"] == "docs/s" and d["extra"] == {"p50_ms": 1.5}


def test_percentiles_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentiles(values) == {"p50": 50, "p99": 99}
    assert percentiles([7.0], (50, 99.9)) == {"p50": 7.0, "p99.9": 7.0}
    assert math.isnan(percentiles([])["p50"])


def test_print_table_ratio_against_named_baseline() -> None:
    base = Result("bare", 1000, 1.0)
    rows = [Result("docex", 250, 1.0), Result("other", 10, 1.0, baseline="missing")]
    buf = io.StringIO()
    print_table("t", rows, baseline="bare", known=[base], file=buf)
    text = buf.getvalue()
    lines = text.splitlines()
    assert lines[1] == "== t =="
    docex_line = next(line for line in lines if line.startswith("docex"))
    assert "0.25x" in docex_line and "bare" in docex_line
    other_line = next(line for line in lines if line.startswith("other"))
    assert other_line.split()[5] == "-"  # its own baseline is not in the run
    header = lines[2]
    assert header.split()[:6] == ["name", "count", "seconds", "rate", "unit", "ratio"]
    # aligned: the ratio column ends at the same place on every line
    end = header.index("ratio") + len("ratio")
    assert docex_line[end - 5 : end] == "0.25x"


def test_crypto_baseline_runs_tiny() -> None:
    results = crypto_baseline.measure_all(min_seconds=0.001)
    names = {r.name for r in results}
    assert set(crypto_baseline.DOC_OPS_10KB) <= names
    assert {"aes256gcm_encrypt_1MB", "aes256gcm_decrypt_1MB", "sha256_1MB"} <= names
    for r in results:
        _sane(r)
        assert r.unit == "ops/s"
    doc = crypto_baseline.doc_crypto(results)
    _sane(doc)
    assert doc.unit == "docs/s"


def test_main_rejects_unknown_suite(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench_main.main(["nope"])
    assert exc.value.code == 2
    assert "unknown suite" in capsys.readouterr().err


def test_main_json_and_skips_unwritten_suites(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        bench_main,
        "SUITES",
        {"crypto": "bench.crypto_baseline", "later": "bench.not_written_yet"},
    )
    monkeypatch.setattr(crypto_baseline, "run", lambda quick: [Result("op", 3, 1.0, "ops/s")])
    assert bench_main.main(["--json", "--quick"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["quick"] is True and doc["failed"] == []
    assert doc["suites"]["crypto"][0]["rate"] == 3
    assert "later" not in doc["suites"]
    assert "not written yet" in captured.err


@pytest.mark.rabbitmq
def test_temp_vhost_created_then_deleted() -> None:
    with temp_vhost("docex-test") as vhost:
        assert vhost.startswith("docex-test-")
        resp = requests.get(f"{MGMT_URL}/api/vhosts/{vhost}", auth=GUEST, timeout=10)
        assert resp.status_code == 200
    resp = requests.get(f"{MGMT_URL}/api/vhosts/{vhost}", auth=GUEST, timeout=10)
    assert resp.status_code == 404


@pytest.mark.rabbitmq
def test_raw_roundtrip_tiny() -> None:
    r = baselines.raw_roundtrip(200, 1024, window=50)
    _sane(r)
    assert r.count == 200 and r.unit == "msgs/s"
    assert r.extra["publish_rate"] > 0


@pytest.mark.rabbitmq
def test_bare_choreography_tiny_two_recipients() -> None:
    r = baselines.bare_choreography(60, 1024, recipients=2, latency_docs=30, warmup=10)
    _sane(r)
    assert r.count == 60 and r.extra["recipients"] == 2
    assert 0 < r.extra["p50_ms"] <= r.extra["p99_ms"]
    assert r.extra["lat_at_rate"] > 0
