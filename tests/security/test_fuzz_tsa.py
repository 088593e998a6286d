"""Fuzz the time-stamping authority: whatever bytes arrive, it answers a DER TimeStampResp
(granted or a rejection with its failure bit) and never raises."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from asn1crypto import algos, tsp
from hypothesis import example, given
from hypothesis import strategies as st

from docex.pki.tsa import TimeStampAuthority, response_status
from tests.conftest import Pki
from tests.security.fuzzing import fuzz, mutations


@pytest.fixture(scope="module")
def tsa(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> TimeStampAuthority:
    directory: Path = tmp_path_factory.mktemp("fuzz-tsa")
    pki.county.issue_tsa("阳山县信息中心时间戳服务", directory, None)
    return TimeStampAuthority.load(directory, None)


GENUINE = tsp.TimeStampReq({
    "version": "v1",
    "message_imprint": {"hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                        "hashed_message": hashlib.sha256(b"x").digest()},
    "nonce": 12345, "cert_req": True,
}).dump()


def test_fuzz_tsa_request(tsa: TimeStampAuthority) -> None:
    assert response_status(tsa.respond(GENUINE))[0] == "granted"

    @given(mutations(GENUINE) | st.binary(max_size=256))
    @example(b"0=\x02\x01\x01010\r\x06\x02`\x86H\x01e\x03\x04\x02\x01\x05\x00\x04 " + bytes(32) + b"\x02\x0209\x01\x01\xff")
    def target(raw: bytes) -> None:
        status, _, _ = response_status(tsa.respond(raw))
        assert status in ("granted", "rejection")

    fuzz("TSA request", target)
