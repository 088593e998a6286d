"""Directory snapshots: accepted only when signed by the hub owning their prefix."""

from __future__ import annotations

import dataclasses

import pytest

from docex.pki.credentials import UnitCredentials
from docex.pki.errors import PkiError
from docex.protocols.directory import (
    DirectorySnapshot,
    UnitEntry,
    cert_pem,
    sign_directory,
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
