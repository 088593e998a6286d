"""Issue 10, high: revoking an encryption certificate changed nothing (senders still
encrypted to it and the hub delivered it). Now the sending agent refuses
(`certificate_revoked` / `certificate_expired`), the hub refuses an envelope whose
RecipientInfos name a revoked or expired certificate (issuer and serial, no decryption),
and the hub's directory snapshots never list a revoked or expired certificate. Against the
running exchange: tests/security/test_exchange_findings.py."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from docex.agent.sending import Draft, queue_document
from docex.pki import cms
from docex.pki.ca import CertificateAuthority
from docex.pki.errors import PkiError
from docex.pki.keys import load_certificate
from docex.pki.recipients import check_recipients, usable_for_encryption
from docex.pki.trust import TrustStore
from docex.protocols.directory import UnitEntry, cert_pem
from tests.agent.homes import County, build_county
from tests.conftest import Pki

XXZX, ZFB, FGJ = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "qingyuan.yangshan.fgj"
OLD = "qingyuan.yangshan.old"
FILES = {"正文.txt": "请各单位认真贯彻落实。".encode()}


@pytest.fixture(scope="module")
def own(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> County:
    """A county with a CA of its own: these tests revoke certificates."""
    root = tmp_path_factory.mktemp("revoked")
    ca = CertificateAuthority.init(root / "ca", "阳山县信息中心（吊销测试）", None)
    return build_county(Pki(root, ca, pki.city, pki.stranger), root / "homes")


def _draft(to: str) -> Draft:
    return Draft(to=(to,), title="测试通知", doc_number="阳信发〔2011〕7号", files=FILES)


def _trust(county: County) -> TrustStore:
    ca = county.pki.county
    return TrustStore([ca.certificate], [ca.crl()])


def test_revoked_and_expired_encryption_certificates_are_refused_everywhere(own: County, tmp_path: Path) -> None:
    ca = own.pki.county
    fgj_enc = load_certificate(own.homes[FGJ] / "enc.crt")
    expired = ca.issue_unit(OLD, "已过期单位", tmp_path / "old", None, validity_days=0).enc_cert
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    # Before: both usable (the expired one expires at the moment of issue)
    assert usable_for_encryption(fgj_enc, _trust(own)) is None
    ca.revoke(fgj_enc.serial_number, "key_compromise")
    trust = _trust(own)
    assert usable_for_encryption(fgj_enc, trust) == "certificate_revoked"
    assert usable_for_encryption(expired, trust, later) == "certificate_expired"

    # The hub: issuer and serial of each RecipientInfo, no key needed.
    inner = b"signed package stand-in"
    zfb_enc = load_certificate(own.homes[ZFB] / "enc.crt")
    check_recipients(cms.encrypt(inner, [zfb_enc]), trust, [zfb_enc])  # a valid one passes
    with pytest.raises(PkiError) as exc:
        check_recipients(cms.encrypt(inner, [zfb_enc, fgj_enc]), trust, [zfb_enc])
    assert exc.value.code == "certificate_revoked"
    with pytest.raises(PkiError) as exc:
        check_recipients(cms.encrypt(inner, [expired]), trust, [expired], at=later)
    assert exc.value.code == "certificate_expired"

    # The sending agent: its CRL says revoked (the directory it holds still lists the key).
    sender = own.context(XXZX)
    (own.homes[XXZX] / "crl.pem").write_bytes((ca.directory / "crl.pem").read_bytes())
    sender.install_crls(((ca.directory / "crl.pem").read_text(),))
    with pytest.raises(PkiError) as exc:
        queue_document(sender, _draft(FGJ))
    assert exc.value.code == "certificate_revoked"
    # A directory that lists no key for a unit (the hub omits revoked ones): refused too.
    entry = UnitEntry(address="qingyuan.yangshan.nokey", name="无证书单位", enc_cert="")
    expired_entry = UnitEntry(address=OLD, name="已过期单位", enc_cert=cert_pem(expired))
    own.version += 1
    (own.homes[XXZX] / "directory.der").write_bytes(own.snapshot(extra=(entry, expired_entry)))
    sender = own.context(XXZX)
    with pytest.raises(PkiError) as exc:
        queue_document(sender, _draft("qingyuan.yangshan.nokey"))
    assert exc.value.code == "certificate_revoked"
    while dt.datetime.now(dt.UTC) <= expired.not_valid_after_utc:  # validity_days=0: expires as issued
        time.sleep(0.05)
    with pytest.raises(PkiError) as exc:
        queue_document(sender, _draft(OLD))
    assert exc.value.code == "certificate_expired"
    assert queue_document(sender, _draft(ZFB))  # a valid recipient still works
