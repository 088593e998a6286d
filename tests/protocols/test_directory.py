"""Directory snapshots and their deltas: accepted only when signed by the hub owning their
prefix; a delta turns exactly its base version into the next."""

from __future__ import annotations

import dataclasses

import pytest

from docex.pki.credentials import UnitCredentials
from docex.pki.errors import PkiError
from docex.protocols.directory import (
    DirectoryDelta,
    DirectorySnapshot,
    UnitEntry,
    apply_delta,
    cert_pem,
    diff,
    sign_delta,
    sign_directory,
    verify_delta,
    verify_directory,
)
from docex.protocols.statement import sign_statement
from tests.conftest import Pki
from tests.protocols.conftest import A, B, Hub


@pytest.fixture(scope="module")
def snapshot(a: UnitCredentials, b: UnitCredentials, county_hub: Hub) -> DirectorySnapshot:
    units = tuple(
        UnitEntry(u.address, u.name, "agency", sign_cert=cert_pem(u.sign_cert), enc_cert=cert_pem(u.enc_cert))
        for u in (a, b)
    )
    return DirectorySnapshot("qingyuan.yangshan", 7, "2011-08-25T00:00:00+00:00", units, cert_pem(county_hub.cert),
                             ("qingyuan.yangshan.qitang",))


def test_round_trip(snapshot: DirectorySnapshot, county_hub: Hub, b: UnitCredentials, pki: Pki) -> None:
    der = sign_directory(snapshot, county_hub.cert, county_hub.key)
    got = verify_directory(der, pki.trust(), expected_prefix="qingyuan.yangshan")
    assert got == snapshot
    entry = got.find(B)
    assert entry is not None and entry.name == "阳山县人民政府办公室"
    assert entry.enc_certificate() == b.enc_cert and entry.sign_certificate() == b.sign_cert
    assert entry.seal_image() is None and got.find("qingyuan.nowhere") is None


def test_hub_signs_only_its_own_prefix(snapshot: DirectorySnapshot, other_hub: Hub) -> None:
    with pytest.raises(PkiError) as exc:
        sign_directory(snapshot, other_hub.cert, other_hub.key)
    assert exc.value.code == "directory_untrusted"


def test_snapshot_signed_by_another_hub(snapshot: DirectorySnapshot, other_hub: Hub, pki: Pki) -> None:
    der = sign_statement("directory", snapshot.to_payload(), other_hub.cert, other_hub.key)
    with pytest.raises(PkiError) as exc:
        verify_directory(der, pki.trust())
    assert exc.value.code == "directory_untrusted"


def test_expected_prefix_and_foreign_units(snapshot: DirectorySnapshot, county_hub: Hub, other_hub: Hub,
                                           pki: Pki) -> None:
    der = sign_directory(snapshot, county_hub.cert, county_hub.key)
    with pytest.raises(PkiError) as exc:
        verify_directory(der, pki.trust(), expected_prefix="qingyuan.yingde")
    assert exc.value.code == "directory_untrusted"
    smuggled = dataclasses.replace(snapshot, prefix="qingyuan.yingde",
                                   units=(*snapshot.units, UnitEntry("qingyuan.yangshan.fake", "冒名")))
    der = sign_directory(smuggled, other_hub.cert, other_hub.key)
    with pytest.raises(PkiError) as exc:
        verify_directory(der, pki.trust())
    assert exc.value.code == "directory_untrusted"


def test_units_cannot_sign_directories(snapshot: DirectorySnapshot, a: UnitCredentials, pki: Pki) -> None:
    der = sign_statement("directory", snapshot.to_payload(), a.sign_cert, a.sign_key)
    with pytest.raises(PkiError) as exc:
        verify_directory(der, pki.trust())
    assert exc.value.code == "wrong_certificate_role"


def test_malformed_snapshot(county_hub: Hub, pki: Pki) -> None:
    der = sign_statement("directory", {"prefix": "qingyuan.yangshan", "version": "seven"}, county_hub.cert,
                         county_hub.key)
    with pytest.raises(PkiError) as exc:
        verify_directory(der, pki.trust())
    assert exc.value.code == "directory_untrusted"


def test_unit_addresses_are_examples_of_the_county(snapshot: DirectorySnapshot) -> None:
    assert {u.address for u in snapshot.units} == {A, B}


# -- deltas -------------------------------------------------------------------------------------
def _next(snapshot: DirectorySnapshot) -> DirectorySnapshot:
    """Version 9: A renamed and disabled, B removed, a new unit, one more child prefix."""
    a = dataclasses.replace(snapshot.units[0], name="阳山县档案局（更名）", state="disabled")
    new = UnitEntry("qingyuan.yangshan.xin", "阳山县新设单位", "agency")
    return dataclasses.replace(snapshot, version=9, generated_at="2011-08-26T00:00:00+00:00", units=tuple(sorted((a, new), key=lambda u: u.address)),
                               children=("qingyuan.yangshan.qitang", "qingyuan.yangshan.lianjiang"))


def test_a_delta_carries_only_the_change_and_applies_to_its_base(snapshot: DirectorySnapshot, county_hub: Hub,
                                                                  pki: Pki) -> None:
    after = _next(snapshot)
    delta = diff(snapshot, after)
    assert {u.address for u in delta.units} == {A, "qingyuan.yangshan.xin"} and delta.removed == (B,)
    got = verify_delta(sign_delta(delta, county_hub.cert, county_hub.key), pki.trust(),
                       expected_prefix="qingyuan.yangshan")
    assert got == delta
    assert apply_delta(snapshot, got) == after
    assert apply_delta(snapshot, got).find(B) is None
    with pytest.raises(PkiError) as exc:  # only onto exactly version 7
        apply_delta(after, got)
    assert exc.value.code == "directory_untrusted"
    with pytest.raises(ValueError):
        diff(after, snapshot)  # never backwards


def test_a_delta_is_checked_like_a_snapshot(snapshot: DirectorySnapshot, county_hub: Hub, other_hub: Hub,
                                            a: UnitCredentials, pki: Pki) -> None:
    delta = diff(snapshot, _next(snapshot))
    hostile = {
        "another hub": sign_statement("directory-delta", delta.to_payload(), other_hub.cert, other_hub.key),
        "a unit": sign_statement("directory-delta", delta.to_payload(), a.sign_cert, a.sign_key),
        "outside the prefix": sign_delta(dataclasses.replace(delta, removed=("qingyuan.yingde.zfb",)),
                                         county_hub.cert, county_hub.key),
        "a path for an address": sign_delta(dataclasses.replace(delta, removed=("../../etc",)),
                                            county_hub.cert, county_hub.key),
        "backwards": sign_delta(dataclasses.replace(delta, base_version=9, version=9), county_hub.cert, county_hub.key),
        "a snapshot, not a delta": sign_directory(snapshot, county_hub.cert, county_hub.key),
        "not well formed": sign_statement("directory-delta", {"prefix": "qingyuan.yangshan"}, county_hub.cert,
                                          county_hub.key),
    }
    for what, der in hostile.items():
        with pytest.raises(PkiError) as exc:
            verify_delta(der, pki.trust(), expected_prefix="qingyuan.yangshan")
        assert exc.value.code in ("directory_untrusted", "certificate_untrusted", "wrong_certificate_role"), what
    with pytest.raises(PkiError):
        sign_delta(delta, other_hub.cert, other_hub.key)
    assert isinstance(DirectoryDelta.from_payload(delta.to_payload()), DirectoryDelta)


def test_find_is_a_lookup_not_a_scan() -> None:
    units = tuple(UnitEntry(f"qingyuan.yangshan.u{i:05d}", f"单位{i}") for i in range(10_000))
    snap = DirectorySnapshot("qingyuan.yangshan", 1, "2011-08-25T00:00:00+00:00", units)
    assert snap.find("qingyuan.yangshan.u09999") is units[-1] and snap.find("qingyuan.yangshan.none") is None
    assert "_by_address" in snap.__dict__  # built once, kept with the snapshot
