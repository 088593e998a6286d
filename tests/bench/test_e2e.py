"""The end-to-end bench: its bookkeeping (pure), and one tiny real run on the local broker
that builds a network, measures, checks the sender's store and leaves nothing behind.
Timings are never asserted."""

from __future__ import annotations

import math
import threading
from dataclasses import replace
from urllib.parse import quote

import pytest
import requests

from bench import e2e
from bench.harness import GUEST, MGMT_URL, Result


def test_tracker_completes_a_document_on_its_last_delivered_receipt() -> None:
    t = e2e.Tracker()
    t.expect("m1", ["a", "b"])
    t.receipt("m1|a|delivered")
    t.receipt("m1|a|delivered")  # a redelivery counts once
    t.receipt("m1|b|signed_for")  # not the event we wait for
    t.receipt("other|b|delivered")  # not ours
    t.receipt(None)
    assert "m1" not in t.done_at and t.in_flight() == 1
    t.receipt("m1|b|delivered")
    assert t.in_flight() == 0 and t.latency("m1") >= 0


def test_tracker_wait_wakes_on_completion_and_times_out_clearly() -> None:
    t = e2e.Tracker()
    t.expect("m1", ["a"])
    threading.Timer(0.05, t.receipt, args=("m1|a|delivered",)).start()
    t.wait_done(["m1"], timeout=10)
    t.expect("m2", ["a"])
    with pytest.raises(e2e.BenchError, match="1 documents unreceipted"):
        t.wait_done(["m2"], timeout=0.05)


def test_crypto_cost_adds_up_the_mandatory_operations() -> None:
    cost = e2e.CryptoCost.__new__(e2e.CryptoCost)
    cost.rates = dict.fromkeys(
        ["rsa2048_sign", "rsa2048_verify", "rsa_oaep_encrypt", "rsa_oaep_decrypt",
         "aes256gcm_encrypt_10KB", "aes256gcm_decrypt_10KB", "sha256_10KB"], 1.0)
    # 1 recipient: 3 signs, 5 verifies, 1 wrap, 1 unwrap, 1 encrypt, 1 decrypt, 2 hashes
    assert cost.per_doc(1) == 14
    assert cost.per_doc(5) == 7 + 21 + 5 + 5 + 1 + 5 + 6
    assert cost.row(1).extra["per_doc_ms"] == 14_000


def test_judge_writes_each_goal_into_its_row() -> None:
    rows = [
        Result("bare_choreography", 4000, 1.0),
        Result("bare_choreography_5", 1000, 1.0),
        Result("e2e_1", 700, 1.0, extra={"p99_ms": 120.0}),
        Result("e2e_5", 10, 1.0, extra={"p99_ms": 900.0}),
        Result("broadcast_125", 3, 6.0, extra={"s_max": 2.5}),
    ]
    e2e.judge(rows)
    by = {r.name: r.extra.get("goal") for r in rows}
    assert by["e2e_1"] == "rate>=5%bare:met(17.5%),p99<150ms:met"
    assert by["e2e_5"] == "rate>=5%bare:NOT-met(1.0%)"
    assert by["broadcast_125"] == "all<2s:NOT-met"


@pytest.mark.slow
@pytest.mark.rabbitmq
def test_a_tiny_network_measures_and_cleans_up() -> None:
    sizes = replace(e2e.QUICK, docs=3, warmup=1, window=2, latency_docs=2, broadcasts=1)
    crypto = e2e.CryptoCost.__new__(e2e.CryptoCost)
    crypto.rates = dict.fromkeys(
        ["rsa2048_sign", "rsa2048_verify", "rsa_oaep_encrypt", "rsa_oaep_decrypt",
         "aes256gcm_encrypt_10KB", "aes256gcm_decrypt_10KB", "sha256_10KB"], 1000.0)
    with e2e.Network(2, hub_workers=1) as net:
        vhost = net.net.config.broker.vhost
        root = net.root
        one = e2e.throughput(net, 1, sizes, crypto)
        both = e2e.broadcast(net, sizes, crypto)
    assert one.name == "e2e_1" and one.count == 3 and math.isfinite(one.rate) and one.rate > 0
    assert one.extra["p99_ms"] >= one.extra["p50_ms"] > 0
    assert both.name == "broadcast_2" and both.count == 1 and both.extra["units"] == 2
    assert not root.exists()
    resp = requests.get(f"{MGMT_URL}/api/vhosts/{quote(vhost, safe='')}", auth=GUEST, timeout=10)
    assert resp.status_code == 404


def test_capacity_judges_its_rows() -> None:
    from bench import capacity

    rows = [
        Result("bare_choreography", 4000, 1.0),
        Result("hub_capacity", 1200, 1.0),
        Result("idle_agent", 1, 60.0, "agents", extra={"rss_mb": 58.0, "cpu_pct": 0.7}),
    ]
    capacity.judge(rows)
    by = {r.name: r.extra.get("goal") for r in rows}
    assert by["hub_capacity"] == ">=25%bare:met(30.0%)"
    assert by["idle_agent"] == "rss<60MB:met,cpu<0.5%:NOT-met"
