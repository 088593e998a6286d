"""Fuzz the envelope: random and damaged bytes at the hub's outer check and the agent's
full open, and, the harder case, envelopes a registered unit signs properly around a
hostile routing header or package: the signatures verify, so the parsers behind them
must still refuse by name."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from docex.pki import cms
from docex.pki.credentials import UnitCredentials
from docex.pki.trust import TrustStore
from docex.protocols import envelope
from tests.conftest import Pki
from tests.protocols import forge
from tests.security.fuzzing import expect_parse_or_named_error, fuzz, mutations
from tests.security.test_fuzz_header import HEADER
from tests.security.test_fuzz_package import hostile_zips

FILES = {"正文.txt": "关于开展测试的通知".encode(), "附件1.bin": bytes(range(256))}


@pytest.fixture(scope="module")
def genuine(a: UnitCredentials, b: UnitCredentials) -> bytes:
    m = forge.manifest(a.address, [b.address], FILES)
    return envelope.pack(m, FILES, a, [b.enc_cert])


def _open(raw: bytes, me: UnitCredentials, trust: TrustStore) -> None:
    expect_parse_or_named_error(lambda: envelope.read_header(raw))
    expect_parse_or_named_error(lambda: envelope.verify_outer(raw, trust, max_size=1 << 20))
    expect_parse_or_named_error(lambda: envelope.open_envelope(raw, me, trust, max_size=1 << 20, max_unpacked=1 << 22))


def test_fuzz_envelope_damaged(pki: Pki, genuine: bytes, b: UnitCredentials) -> None:
    trust = pki.trust()

    @given(mutations(genuine))
    def target(raw: bytes) -> None:
        _open(raw, b, trust)

    fuzz("envelope (damaged)", target)


def test_fuzz_envelope_signed_hostile_header(pki: Pki, a: UnitCredentials, b: UnitCredentials) -> None:
    trust = pki.trust()
    m = forge.manifest(a.address, [b.address], FILES)
    encrypted = cms.encrypt(cms.sign(forge.package(m, FILES), a.sign_cert, a.sign_key), [b.enc_cert])

    @given(HEADER | st.builds(lambda d: {**json.loads(forge.header_for(m, len(encrypted)).to_json()), **d}, HEADER))
    def target(header: object) -> None:
        raw = cms.sign(encrypted, a.sign_cert, a.sign_key, content_type="authenticated_enveloped_data",
                       attributes={"docex_routing_header": json.dumps(header, ensure_ascii=False).encode()})
        _open(raw, b, trust)

    fuzz("envelope (signed, hostile header)", target)


def test_fuzz_envelope_signed_hostile_package(pki: Pki, a: UnitCredentials, b: UnitCredentials) -> None:
    trust = pki.trust()
    m = forge.manifest(a.address, [b.address], FILES)

    @given(hostile_zips() | st.binary(max_size=512))
    def target(package: bytes) -> None:
        _open(forge.wrap(package, m, a, [b.enc_cert]), b, trust)

    fuzz("envelope (signed, hostile package)", target)
