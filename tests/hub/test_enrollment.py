"""Terminals' certificate requests as the hub receives them (no broker): checked before
anything is kept, bounded per address and in total; approval needs the exact fingerprint."""

from __future__ import annotations

import json
from typing import Any

import pytest

from docex.hub import enrollment
from docex.hub.config import HubConfig
from docex.pki.errors import PkiError
from docex.pki.keys import generate_rsa_key
from docex.pki.requests import make_request

ADDRESS = "qingyuan.yangshan.newunit"


def _body(address: str = ADDRESS) -> dict[str, Any]:
    return {"address": address, **{f"{k}_csr": make_request(generate_rsa_key(2048), address).decode()
                                   for k in ("sign", "enc", "client")}}


def _refused(hub_config: HubConfig, data: Any) -> str:
    with pytest.raises(PkiError) as err:
        enrollment.submit(hub_config, data)
    assert enrollment.pending(hub_config) == []
    return err.value.code


def test_a_request_is_kept_with_its_fingerprint_and_no_private_key(hub_config: HubConfig) -> None:
    request = enrollment.submit(hub_config, _body(), peer="10.0.0.7")
    assert [r.id for r in enrollment.pending(hub_config)] == [request.id]
    stored = (hub_config.home / "enrollment" / f"{request.id}.json").read_text("utf-8")
    assert "PRIVATE KEY" not in stored and json.loads(stored)["fingerprint"] == request.fingerprint
    assert enrollment.status(hub_config, request.id) == {"id": request.id, "address": ADDRESS, "state": "pending",
                                                        "fingerprint": request.fingerprint}


@pytest.mark.parametrize("address,code", [("Qingyuan..x", "bad_address"), ("qingyuan.other.unit", "bad_address"),
                                          ("qingyuan.yangshan", "bad_address")])
def test_addresses_outside_the_prefix_or_malformed_are_refused(hub_config: HubConfig, address: str, code: str) -> None:
    assert _refused(hub_config, _body(address)) == code


def test_malformed_bodies_are_refused(hub_config: HubConfig) -> None:
    assert _refused(hub_config, []) == "bad_request"
    assert _refused(hub_config, {"address": ADDRESS}) == "bad_request"
    assert _refused(hub_config, {**_body(), "sign_csr": "garbage"}) == "bad_request"
    same = make_request(generate_rsa_key(2048), ADDRESS).decode()
    assert _refused(hub_config, {**_body(), "sign_csr": same, "enc_csr": same}) == "bad_request"
    assert _refused(hub_config, {**_body(), "client_csr": same, "enc_csr": same}) == "bad_request"


def test_request_ids_never_name_a_path(hub_config: HubConfig) -> None:
    for bad in ("../docex", "a" * 31, "../../etc/passwd", "A" * 32):
        with pytest.raises(PkiError) as err:
            enrollment.status(hub_config, bad)
        assert err.value.code == "unknown_request"


def test_newer_requests_for_an_address_supersede_the_oldest(hub_config: HubConfig) -> None:
    made = [enrollment.submit(hub_config, _body()) for _ in range(enrollment.MAX_PENDING_PER_ADDRESS + 1)]
    waiting = {r.id for r in enrollment.pending(hub_config)}
    assert made[0].id not in waiting and len(waiting) == enrollment.MAX_PENDING_PER_ADDRESS
    assert enrollment.status(hub_config, made[0].id)["state"] == "superseded"


def test_the_total_waiting_is_bounded(hub_config: HubConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(enrollment, "MAX_PENDING", 2)
    enrollment.submit(hub_config, _body("qingyuan.yangshan.a"))
    enrollment.submit(hub_config, _body("qingyuan.yangshan.b"))
    with pytest.raises(PkiError) as err:
        enrollment.submit(hub_config, _body("qingyuan.yangshan.c"))
    assert err.value.code == "rate_limited"


def test_rate_limit_per_client() -> None:
    limit = enrollment.RateLimit(3, 600.0)
    assert [limit.allow("10.0.0.7") for _ in range(4)] == [True, True, True, False]
    assert limit.allow("10.0.0.8")
