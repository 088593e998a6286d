"""Issue 10, medium: refused bytes were kept without limit (71 MB for a 70 MB refusal), and
CRLs failed open (an expired CRL, or none, let revoked certificates through). Now what
HUBDIR/refused/ keeps is bounded (size of each, count, age; `[limits]` in docex.toml), and
a stale or missing CRL of our own CA fails closed (`crl_stale`, after a grace period) at
the hub and at the agent."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from docex.hub.config import Limits
from docex.hub.refusals import keep_bytes, prune_refused
from docex.pki.ca import CertificateAuthority
from docex.pki.errors import PkiError
from docex.pki.keys import load_certificate
from docex.pki.trust import TrustStore
from tests.agent.homes import build_county
from tests.conftest import Pki

ZFB = "qingyuan.yangshan.zfb"


def test_refused_bytes_are_bounded_in_size_count_and_age(tmp_path: Path) -> None:
    limits = Limits(refused_max_item_bytes=1000, refused_max_files=3, refused_max_age_days=30)
    ctx = SimpleNamespace(config=SimpleNamespace(limits=limits, refused_dir=tmp_path / "refused"))
    old_day = tmp_path / "refused" / "2011-01-01"
    old_day.mkdir(parents=True)
    (old_day / ("0" * 64 + ".bin")).write_bytes(b"old")
    big = os.urandom(70_000)
    kept = Path(keep_bytes(ctx, big))  # type: ignore[arg-type]
    assert kept.read_bytes() == big[:1000] and kept.name.endswith(".head.bin")
    assert not old_day.exists()  # older than 30 days: gone
    paths = [Path(keep_bytes(ctx, os.urandom(10))) for _ in range(5)]  # type: ignore[arg-type]
    left = sorted((tmp_path / "refused").rglob("*.bin"))
    assert len(left) == 3 and set(paths[-3:]) <= set(left)
    assert sum(p.stat().st_size for p in left) <= 3 * 1000
    assert oct(kept.parent.stat().st_mode & 0o777) == "0o700"
    assert prune_refused(tmp_path / "nothing", 3, 30) == 0


def _crl(ca: CertificateAuthority, next_update: dt.datetime) -> x509.CertificateRevocationList:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateRevocationListBuilder().issuer_name(ca.certificate.subject)
            .last_update(min(now, next_update) - dt.timedelta(days=1)).next_update(next_update)
            .sign(ca.signing_key(), hashes.SHA256()))


def test_a_stale_or_missing_crl_of_our_own_ca_fails_closed(pki: Pki, tmp_path: Path) -> None:
    ca = CertificateAuthority.init(tmp_path / "ca", "阳山县信息中心（CRL 测试）", None)
    unit = ca.issue_unit(ZFB, "阳山县人民政府办公室", tmp_path / "zfb", None)
    now = dt.datetime.now(dt.UTC)
    stale = _crl(ca, now - dt.timedelta(hours=73))
    within_grace = _crl(ca, now - dt.timedelta(hours=1))
    grace = dt.timedelta(hours=72)
    for crls in ([], [stale]):
        with pytest.raises(PkiError) as exc:
            TrustStore([ca.certificate], crls).make_strict(ca.certificate, grace=grace).verify(unit.sign_cert)
        assert exc.value.code == "crl_stale"
        TrustStore([ca.certificate], crls).verify(unit.sign_cert)  # another CA's: as before
    TrustStore([ca.certificate], [within_grace]).make_strict(ca.certificate, grace=grace).verify(unit.sign_cert)
    TrustStore([ca.certificate], [ca.crl()]).make_strict(ca.certificate).verify(unit.sign_cert)


def test_the_agent_fails_closed_on_its_hubs_stale_crl(pki: Pki, tmp_path: Path) -> None:
    county = build_county(pki, tmp_path / "county")
    ctx = county.context(ZFB)
    cert = load_certificate(county.homes["qingyuan.yangshan.xxzx"] / "sign.crt")
    ctx.trust.verify(cert)  # a current CRL: fine
    from cryptography.hazmat.primitives.serialization import Encoding

    (county.homes[ZFB] / "crl.pem").write_bytes(
        _crl(pki.county, dt.datetime.now(dt.UTC) - dt.timedelta(days=10)).public_bytes(Encoding.PEM))
    for extra in (county.homes[ZFB] / "crls").glob("*.pem"):
        extra.unlink()
    with pytest.raises(PkiError) as exc:
        county.context(ZFB).trust.verify(cert)
    assert exc.value.code == "crl_stale"
