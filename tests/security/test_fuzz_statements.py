"""Fuzz the signed statements: receipts, hub notices and directory snapshots, damaged on
the wire, and, properly signed by a unit or hub, around hostile JSON payloads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from docex.pki.credentials import UnitCredentials
from docex.pki.trust import TrustStore
from docex.protocols import directory, notice, receipt
from docex.protocols.statement import sign_statement
from tests.conftest import Pki
from tests.protocols.conftest import Hub
from tests.security.fuzzing import expect_parse_or_named_error, fuzz, json_values, mutations, shaped

B = "qingyuan.yangshan.zfb"
IDS = st.uuids().map(str) | st.sampled_from(["../../x", "/abs", ""])
TEXT = st.text(max_size=40)
RECEIPT = shaped({
    "message_id": IDS, "recipient": st.sampled_from([B, "qingyuan.yangshan.xxzx", "../x"]),
    "event": st.sampled_from([*receipt.EVENTS, "x"]), "envelope_sha256": st.sampled_from(["0" * 64, "ab"]) | TEXT,
    "at": TEXT, "reason": TEXT, "person": TEXT, "error": TEXT,
})
NOTICE = shaped({
    "message_id": IDS, "event": st.sampled_from([*notice.EVENTS, "x"]), "code": TEXT, "message": TEXT,
    "recipients": st.lists(st.sampled_from([B, "../x"]), max_size=3), "hub": st.sampled_from(["qingyuan.yangshan", "x"]),
    "at": TEXT,
})
UNIT = shaped({
    "address": st.sampled_from([B, "qingyuan.other.x", "../x"]), "name": TEXT, "kind": TEXT,
    "state": st.sampled_from(["enabled", "disabled", "x"]), "phase": TEXT, "sign_cert": TEXT, "enc_cert": TEXT,
    "seal_png": st.sampled_from(["", "!!notbase64", "aGVsbG8="]),
})
SNAPSHOT = shaped({
    "prefix": st.sampled_from(["qingyuan.yangshan", "qingyuan"]), "version": st.integers() | TEXT,
    "generated_at": TEXT, "units": st.lists(UNIT, max_size=3), "hub_cert": TEXT,
    "children": st.lists(TEXT, max_size=2) | json_values, "crls": st.lists(TEXT, max_size=2) | json_values,
})

DELTA = shaped({
    "prefix": st.sampled_from(["qingyuan.yangshan", "qingyuan"]), "version": st.integers() | TEXT,
    "base_version": st.integers() | TEXT, "generated_at": TEXT, "units": st.lists(UNIT, max_size=3),
    "removed": st.lists(TEXT, max_size=2) | json_values, "hub_cert": TEXT,
    "children": st.lists(TEXT, max_size=2) | json_values, "crls": st.lists(TEXT, max_size=2) | json_values,
})


def _use_snapshot(snap: directory.DirectorySnapshot) -> None:
    """What an agent does with an accepted snapshot: look units up, read certificates."""
    for unit in snap.units:
        snap.find(unit.address)
        for read in (unit.enc_certificate, unit.sign_certificate, unit.seal_image):
            expect_parse_or_named_error(read)


def _signed_target(kind: str, payloads: st.SearchStrategy[Any], sign: Callable[[str, Any], bytes],
                   verify: Callable[[bytes], Any]) -> Callable[[], None]:
    @given(payloads | json_values)
    @example({"recipients": 5})
    def target(payload: Any) -> None:
        verify(sign(kind, payload))

    return target


def _signer(cert: Any, key: Any) -> Callable[[str, Any], bytes]:
    def sign(kind: str, payload: Any) -> bytes:
        return sign_statement(kind, payload, cert, key)
    return sign


def _damaged(genuine: bytes, verify: Callable[[bytes], Any]) -> Callable[[], None]:
    @given(mutations(genuine))
    def target(raw: bytes) -> None:
        verify(raw)

    return target


def _receipt_verify(trust: TrustStore) -> Callable[[bytes], Any]:
    return lambda der: expect_parse_or_named_error(lambda: receipt.verify_receipt(der, trust))


def _notice_verify(trust: TrustStore) -> Callable[[bytes], Any]:
    return lambda der: expect_parse_or_named_error(lambda: notice.verify_notice(der, trust))


def _directory_verify(trust: TrustStore) -> Callable[[bytes], Any]:
    def verify(der: bytes) -> None:
        snap = expect_parse_or_named_error(lambda: directory.verify_directory(der, trust))
        if snap is not None:
            _use_snapshot(snap)
    return verify


def _genuine_receipt(b: UnitCredentials) -> bytes:
    return receipt.make_receipt(message_id="5f0c6f43-51b8-4a5e-9d8e-0f7f4cb1a111", recipient=B, event="delivered",
                                envelope_sha256="ab" * 32, cert=b.sign_cert, key=b.sign_key)[1]


def test_fuzz_receipt_signed(pki: Pki, b: UnitCredentials) -> None:
    fuzz("receipt (signed, hostile payload)",
         _signed_target("receipt", RECEIPT, _signer(b.sign_cert, b.sign_key), _receipt_verify(pki.trust())))


def test_fuzz_receipt_damaged(pki: Pki, b: UnitCredentials) -> None:
    fuzz("receipt (damaged)", _damaged(_genuine_receipt(b), _receipt_verify(pki.trust())))


def test_fuzz_notice_signed(pki: Pki, county_hub: Hub) -> None:
    fuzz("notice (signed, hostile payload)",
         _signed_target("notice", NOTICE, _signer(county_hub.cert, county_hub.key), _notice_verify(pki.trust())))


def test_fuzz_notice_damaged(pki: Pki, county_hub: Hub) -> None:
    _, genuine = notice.make_notice(message_id="5f0c6f43-51b8-4a5e-9d8e-0f7f4cb1a111", event="rejected", code="duplicate",
                                    message="x", recipients=(B,), hub=county_hub.prefix, cert=county_hub.cert, key=county_hub.key)
    fuzz("notice (damaged)", _damaged(genuine, _notice_verify(pki.trust())))


def test_fuzz_directory_signed(pki: Pki, county_hub: Hub) -> None:
    fuzz("directory snapshot (signed, hostile payload)",
         _signed_target("directory", SNAPSHOT, _signer(county_hub.cert, county_hub.key), _directory_verify(pki.trust())))


def test_fuzz_directory_damaged(pki: Pki, county_hub: Hub, b: UnitCredentials) -> None:
    snap = directory.DirectorySnapshot(prefix=county_hub.prefix, version=3, generated_at="2011-10-01T00:00:00Z", units=(
        directory.UnitEntry(B, "阳山县人民政府办公室", enc_cert=directory.cert_pem(b.enc_cert), sign_cert=directory.cert_pem(b.sign_cert)),))
    genuine = directory.sign_directory(snap, county_hub.cert, county_hub.key)
    fuzz("directory snapshot (damaged)", _damaged(genuine, _directory_verify(pki.trust())))


def _delta_verify(trust: TrustStore) -> Callable[[bytes], Any]:
    def verify(der: bytes) -> None:
        delta = expect_parse_or_named_error(lambda: directory.verify_delta(der, trust))
        if delta is not None:  # what an agent does with it: apply it to the version it names
            base = directory.DirectorySnapshot(prefix=delta.prefix, version=delta.base_version, generated_at="x")
            _use_snapshot(directory.apply_delta(base, delta))
    return verify


def test_fuzz_directory_delta_signed(pki: Pki, county_hub: Hub) -> None:
    fuzz("directory delta (signed, hostile payload)",
         _signed_target("directory-delta", DELTA, _signer(county_hub.cert, county_hub.key), _delta_verify(pki.trust())))


def test_an_infinite_version_is_a_named_refusal(pki: Pki, county_hub: Hub) -> None:
    # Found by the one-hour run: Python reads `Infinity` as JSON, and int() of it overflows.
    trust = pki.trust()
    for field in ("version", "base_version"):
        raw = sign_statement("directory-delta", {"prefix": county_hub.prefix, "version": 0, "base_version": 0,
                                                 "generated_at": "", field: float("inf")}, county_hub.cert, county_hub.key)
        assert expect_parse_or_named_error(lambda raw=raw: directory.verify_delta(raw, trust)) is None
