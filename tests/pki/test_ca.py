"""The county CA: what it writes where, what each certificate says, revocation and CRLs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from docex.pki.ca import CertificateAuthority, normalise_reason, read_records
from docex.pki.credentials import PersonCredentials, UnitCredentials
from docex.pki.errors import PkiError
from docex.pki.keys import load_certificate, load_crl
from docex.pki.names import CertRole, address_of, common_name, hub_prefix_of, role_of
from tests.conftest import Pki

XXZX = "qingyuan.yangshan.xxzx"


def _usage(cert: x509.Certificate) -> set[str]:
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    names = ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign"]
    return {n for n in names if getattr(ku.value, n)}


def test_root_ca(pki: Pki) -> None:
    ca = load_certificate(pki.county.directory / "ca.crt")
    key = ca.public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size >= 3072
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert _usage(ca) >= {"key_cert_sign", "crl_sign"}
    assert ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "阳山县信息中心"
    assert (pki.county.directory / "crl.pem").exists() and (pki.county.directory / "index.json").exists()


def test_unit_file_contract_and_subject(pki: Pki) -> None:
    folder = pki.unit_dir(XXZX)
    assert {"sign.crt", "sign.key", "enc.crt", "enc.key", "ca.crt"} <= {p.name for p in folder.iterdir()}
    creds = UnitCredentials.load(folder, None)
    for cert in (creds.sign_cert, creds.enc_cert):
        assert common_name(cert) == "阳山县信息中心"
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == XXZX
        assert "阳山县信息中心".encode() in cert.subject.public_bytes()  # UTF8String, not escaped
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"urn:docex:unit:{XXZX}"]
        assert address_of(cert) == XXZX
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert creds.sign_cert.public_key() != creds.enc_cert.public_key()  # separate keys


def test_seal_certificates_name_document_signing(pki: Pki) -> None:
    """RFC 9336 documentSigning for seals; emailProtection for the CMS envelopes (OpenSSL's
    `cms -verify` checks the smime_sign purpose). Encryption certificates have no EKU."""
    creds = pki.creds(XXZX)
    eku = creds.sign_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert not eku.critical
    assert set(eku.value) == {x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36"), ExtendedKeyUsageOID.EMAIL_PROTECTION}
    with pytest.raises(x509.ExtensionNotFound):
        creds.enc_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)


def test_key_usage_per_role(pki: Pki) -> None:
    creds = pki.creds(XXZX)
    assert role_of(creds.sign_cert) is CertRole.SEAL
    assert _usage(creds.sign_cert) == {"digital_signature", "content_commitment"}
    assert role_of(creds.enc_cert) is CertRole.ENCRYPTION
    assert _usage(creds.enc_cert) == {"key_encipherment"}
    assert role_of(pki.county.certificate) is CertRole.CA


def test_person_certificate(pki: Pki) -> None:
    person = pki.person(XXZX, "张三")
    folder = pki.root / "people" / f"{XXZX}-张三"
    assert {"person.crt", "person.key"} <= {p.name for p in folder.iterdir()}
    assert isinstance(person, PersonCredentials)
    assert (person.address, person.name) == (XXZX, "张三")
    assert role_of(person.cert) is CertRole.PERSON
    assert _usage(person.cert) == {"digital_signature", "content_commitment"}
    san = person.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"urn:docex:person:{XXZX}"]


def test_server_certificate(pki: Pki, tmp_path: Path) -> None:
    cert = pki.county.issue_server("阳山县公文交换中心", tmp_path, None, hub_prefix="qingyuan.yangshan",
                                   dns_names=("hub.yangshan.gov",))
    assert {"server.crt", "server.key", "ca.crt"} <= {p.name for p in tmp_path.iterdir()}
    assert role_of(cert) is CertRole.SERVER and hub_prefix_of(cert) == "qingyuan.yangshan"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["hub.yangshan.gov"]


def test_bad_address_refused(pki: Pki, tmp_path: Path) -> None:
    for bad in ("Qingyuan.Yangshan", "../etc", "qingyuan yangshan"):
        with pytest.raises(PkiError) as exc:
            pki.county.issue_unit(bad, "x", tmp_path, None)
        assert exc.value.code == "bad_address"


def test_ca_life_cycle_and_encrypted_key(tmp_path: Path) -> None:
    with pytest.raises(PkiError) as exc:
        CertificateAuthority.open(tmp_path / "none", None)
    assert exc.value.code == "no_ca"
    ca = CertificateAuthority.init(tmp_path / "ca", "测试发证机构", b"ca-secret")
    assert (tmp_path / "ca" / "ca.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(PkiError) as exc:
        CertificateAuthority.init(tmp_path / "ca", "again", b"x")
    assert exc.value.code == "ca_exists"
    for passphrase, code in ((None, "key_locked"), (b"wrong", "key_unreadable")):
        with pytest.raises(PkiError) as exc:
            CertificateAuthority.open(tmp_path / "ca", passphrase)
        assert exc.value.code == code
    reopened = CertificateAuthority.open(tmp_path / "ca", b"ca-secret")
    assert reopened.certificate == ca.certificate


def test_revoke_and_crl(pki: Pki) -> None:
    unit = pki.new_unit("qingyuan.yangshan.rev", "待吊销单位")
    serial = unit.sign_cert.serial_number
    record = pki.county.revoke(f"0x{serial:X}", "keyCompromise")
    assert (record.status, record.reason, record.address) == ("revoked", "key_compromise", unit.address)
    crl = load_crl(pki.county.directory / "crl.pem")  # re-published on revocation
    assert crl.is_signature_valid(pki.county.certificate.public_key())  # type: ignore[arg-type]
    entry = crl.get_revoked_certificate_by_serial_number(serial)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.key_compromise
    assert crl.get_revoked_certificate_by_serial_number(unit.enc_cert.serial_number) is None
    assert crl.next_update_utc is not None and crl.next_update_utc > dt.datetime.now(dt.UTC)
    with pytest.raises(PkiError) as exc:
        pki.trust().verify(unit.sign_cert)
    assert exc.value.code == "certificate_revoked"
    pki.trust().verify(unit.enc_cert)  # the other certificate stays valid
    with pytest.raises(PkiError) as exc:
        pki.county.revoke(serial)
    assert exc.value.code == "already_revoked"


def test_revoke_accepts_serials_as_people_copy_them(pki: Pki) -> None:
    unit = pki.new_unit("qingyuan.yangshan.rev2", "待吊销单位二")
    hex_serial = f"{unit.enc_cert.serial_number:x}"
    pretty = "00:" + ":".join(hex_serial.zfill(len(hex_serial) + len(hex_serial) % 2)[i:i + 2]
                              for i in range(0, len(hex_serial) + len(hex_serial) % 2, 2)).upper()
    assert pki.county.revoke(pretty, "superseded").serial == hex_serial


def test_revoke_errors(pki: Pki) -> None:
    with pytest.raises(PkiError) as exc:
        pki.county.revoke("deadbeef")
    assert exc.value.code == "unknown_serial"
    with pytest.raises(PkiError) as exc:
        pki.county.revoke(pki.creds(XXZX).sign_cert.serial_number, "felt like it")
    assert exc.value.code == "bad_reason"
    assert normalise_reason("affiliation-changed") == normalise_reason("affiliationChanged") == "affiliation_changed"


def test_index_records_status(pki: Pki, tmp_path: Path) -> None:
    pki.county.issue_unit("qingyuan.yangshan.old", "过期单位", tmp_path, None, validity_days=0)
    records = read_records(pki.county.directory)
    raw = json.loads((pki.county.directory / "index.json").read_text("utf-8"))
    assert len(raw) == len(records)
    by_address = {(r.address, r.role): r for r in records}
    xxzx = by_address[(XXZX, "seal")]
    assert xxzx.holder == "阳山县信息中心" and xxzx.effective_status() == "valid"
    assert by_address[("qingyuan.yangshan.old", "encryption")].effective_status() == "expired"
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3650)
    assert xxzx.effective_status(later) == "expired"
