"""Envelope pack/open per second (10 KB and 1 MB documents, 1 and 5 recipients), each next
to the raw cost of the very same primitive operations measured in the same run.

``raw_pack`` does what a pack must: 2 RSA-2048 signatures (inner, outer), one RSA-OAEP key
wrap per recipient, AES-256-GCM over the signed package, SHA-256 of the files, the package
and the encrypted layer. ``raw_open`` does what an open must: 2 signature verifications,
2 certificate-chain checks (the CA's RSA-3072 signature on the signer's certificate) and 2
CRL signature checks, one OAEP unwrap, AES-256-GCM decryption, SHA-256 of the layers and the
files. The ratio column (docex rate / raw rate) is what the CMS, ZIP and JSON layers cost.
Seconds are this process's CPU time, not wall time: the shared machines run other work, and
both sides of a ratio are single-threaded CPU work, so CPU time keeps the ratio honest.

Run: ``.venv/bin/python -m bench envelope [--quick]`` (or ``python -m bench.envelope``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench import crypto_baseline
from bench.harness import Result, print_table
from docex.pki.ca import CertificateAuthority
from docex.pki.credentials import UnitCredentials
from docex.pki.trust import TrustStore
from docex.protocols import envelope as env
from docex.protocols.manifest import Manifest, new_message_id

TITLE = "公文封包 envelope pack/open vs raw crypto (one core)"
SIZES = {"10KB": 10 * 1024, "1MB": 1024 * 1024}
RECIPIENTS = (1, 5)
SENDER = "qingyuan.yangshan.xxzx"


def measure(name: str, fn: Callable[[], object], min_seconds: float) -> Result:
    """CPU time, not wall time: the envelope figures must survive a busy machine."""
    return crypto_baseline.measure(name, fn, min_seconds, clock=time.process_time, unit="envs/s")


def _pki(root: Path) -> tuple[CertificateAuthority, UnitCredentials, list[UnitCredentials]]:
    ca = CertificateAuthority.init(root / "ca", "阳山县信息中心", None)
    ca.issue_unit(SENDER, "阳山县信息中心", root / "sender", None)
    units = []
    for i in range(max(RECIPIENTS)):
        ca.issue_unit(f"qingyuan.yangshan.u{i}", f"单位{i}", root / f"u{i}", None)
        units.append(UnitCredentials.load(root / f"u{i}", None))
    return ca, UnitCredentials.load(root / "sender", None), units


def _raw_pack(sender: UnitCredentials, recipients: list[UnitCredentials], body: bytes) -> Callable[[], object]:
    key = sender.sign_key
    assert isinstance(key, rsa.RSAPrivateKey)
    pubs = [r.enc_cert.public_key() for r in recipients]
    assert all(isinstance(p, rsa.RSAPublicKey) for p in pubs)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    attrs = os.urandom(300)  # about the size of the signed attributes

    def run() -> object:
        hashlib.sha256(body).digest()  # the manifest's file hash
        hashlib.sha256(body).digest()  # the inner signature's message digest
        key.sign(attrs, padding.PKCS1v15(), hashes.SHA256())
        cek = AESGCM.generate_key(bit_length=256)
        for pub in pubs:
            pub.encrypt(cek, oaep)  # type: ignore[union-attr]
        sealed = AESGCM(cek).encrypt(os.urandom(12), body, None)
        hashlib.sha256(sealed).digest()  # the outer signature's message digest
        return key.sign(attrs, padding.PKCS1v15(), hashes.SHA256())

    return run


def _raw_open(ca: CertificateAuthority, sender: UnitCredentials, me: UnitCredentials, body: bytes) -> Callable[[], object]:
    sign_key, enc_key = sender.sign_key, me.enc_key
    assert isinstance(sign_key, rsa.RSAPrivateKey) and isinstance(enc_key, rsa.RSAPrivateKey)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    attrs = os.urandom(300)
    signature = sign_key.sign(attrs, padding.PKCS1v15(), hashes.SHA256())
    cek = AESGCM.generate_key(bit_length=256)
    wrapped = enc_key.public_key().encrypt(cek, oaep)
    nonce = os.urandom(12)
    sealed = AESGCM(cek).encrypt(nonce, body, None)
    sender_pub = sender.sign_cert.public_key()
    assert isinstance(sender_pub, rsa.RSAPublicKey)
    crl = ca.crl()
    ca_pub = ca.certificate.public_key()

    def run() -> object:
        for _ in range(2):  # outer, then inner layer
            sender_pub.verify(signature, attrs, padding.PKCS1v15(), hashes.SHA256())
            sender.sign_cert.verify_directly_issued_by(ca.certificate)
            crl.is_signature_valid(ca_pub)  # type: ignore[arg-type]
        hashlib.sha256(sealed).digest()
        key = enc_key.decrypt(wrapped, oaep)
        plain = AESGCM(key).decrypt(nonce, sealed, None)
        hashlib.sha256(plain).digest()  # the inner message digest
        return hashlib.sha256(plain).digest()  # the file against the manifest

    return run


def run(quick: bool) -> list[Result]:
    min_seconds = 0.2 if quick else 1.0
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="docex-bench-") as tmp:
        ca, sender, units = _pki(Path(tmp))
        trust = TrustStore([ca.certificate], [ca.crl()])
        for label, size in SIZES.items():
            body = os.urandom(size)  # incompressible, like a scanned PDF
            for n in RECIPIENTS:
                to = units[:n]
                manifest = Manifest(new_message_id(), SENDER, tuple(u.address for u in to), "基准测试公文",
                                    "阳办发〔2011〕42号")
                certs = [u.enc_cert for u in to]
                sealed = env.pack(manifest, {"正文.pdf": body}, sender, certs, main_document="正文.pdf")
                tag = f"{label}_{n}r"
                raw_pack = measure(f"raw_pack_{tag}", _raw_pack(sender, to, body), min_seconds)
                raw_open = measure(f"raw_open_{tag}", _raw_open(ca, sender, to[0], body), min_seconds)
                pack = measure(
                    f"envelope_pack_{tag}",
                    lambda manifest=manifest, certs=certs, body=body: env.pack(  # type: ignore[misc]
                        manifest, {"正文.pdf": body}, sender, certs, main_document="正文.pdf"
                    ),
                    min_seconds,
                )
                opened = measure(
                    f"envelope_open_{tag}",
                    lambda sealed=sealed, me=to[0]: env.open_envelope(sealed, me, trust),  # type: ignore[misc]
                    min_seconds,
                )
                overhead = len(sealed) - size
                for row, base in ((pack, raw_pack), (opened, raw_open)):
                    row.unit = base.unit = "envs/s cpu"
                    row.baseline = base.name
                    row.extra = {"ms": 1000 / row.rate, "raw_ms": 1000 / base.rate}
                pack.extra["bytes_over_doc"] = overhead
                results += [raw_pack, pack, raw_open, opened]
    return results


if __name__ == "__main__":
    import sys

    print_table(TITLE, run("--quick" in sys.argv))
