"""Electronic seals on a 10-page 公文: seals applied and verified per second, next to the raw
RSA-2048 signing cost measured in the same run.

One apply is a PAdES B-LTA seal: the seal signature, its RFC 3161 token from the in-process
TSA, the DSS with chain and CRL, and a document timestamp (three RSA signatures, plus
pyHanko's dry-run signature for size estimation, plus the PDF's incremental writes). One
verify checks every signature, the modification analysis of every revision, the chain and
the CRL, offline.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bench.crypto_baseline import measure
from bench.harness import Result, timed

TITLE = "电子印章 seals on a 10-page 公文 (PAdES B-LTA, in-process TSA)"
BASELINE = "rsa2048_sign"

_PARA = (
    "各单位要高度重视电子公文交换系统的建设和应用，加强组织领导，明确专人负责，"
    "按照县人民政府的统一部署，确保系统按期建成、安全运行，并于2011年10月1日起全面使用。"
)
META = {
    "issuer": "阳山县人民政府",
    "doc_number": "阳府〔2011〕12号",
    "title": "阳山县人民政府关于推行电子公文交换系统的通知",
    "main_recipients": ["各乡镇人民政府", "县府直属各单位"],
    "date": "2011-09-16",
    "cc": ["县委办公室"],
    "printer": "阳山县人民政府办公室",
    "print_date": "2011-09-16",
}


def _pages(pdf: bytes) -> int:
    from docex.pki.seal import _reader

    return int(_reader(pdf).root["/Pages"]["/Count"])


def run(quick: bool) -> list[Result]:
    from docex.documents.compose import compose
    from docex.pki.ca import CertificateAuthority
    from docex.pki.credentials import UnitCredentials
    from docex.pki.seal import apply_seal, verify_seals
    from docex.pki.seal_image import draw_seal
    from docex.pki.tsa import TimeStampAuthority

    logging.getLogger("pyhanko").setLevel(logging.ERROR)
    n_seal, n_verify = (3, 5) if quick else (20, 40)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ca = CertificateAuthority.init(root / "ca", "阳山县信息中心", None)
        ca.issue_unit("qingyuan.yangshan.zfb", "阳山县人民政府", root / "unit", None)
        ca.issue_tsa("阳山县信息中心时间戳服务", root / "tsa", None)
        unit = UnitCredentials.load(root / "unit", None)
        tsa = TimeStampAuthority.load(root / "tsa", None)
        crl = ca.crl()
        image = draw_seal(unit.name)

        # Body for exactly ten pages: 22 lines a page, a paragraph takes three lines.
        body = "\n".join([_PARA] * 64)
        compose_s = timed(lambda: compose(META, body), 1)
        doc = compose(META, body)
        pages = _pages(doc)

        def seal() -> bytes:
            return apply_seal(
                doc, cert=unit.sign_cert, key=unit.sign_key, image_png=image,
                chain=[ca.certificate], crls=[crl], timestamper=tsa.timestamper(),
            )

        sealed = seal()  # warm-up, and the document the verifier reads
        report = verify_seals(sealed, [ca.certificate], expected_address=unit.address)
        if not report.ok:
            raise RuntimeError(f"bench seal does not verify: {report.error} {report.message}")
        seal_s = timed(seal, n_seal)
        verify_s = timed(lambda: verify_seals(sealed, [ca.certificate], expected_address=unit.address), n_verify)

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        data = b"x" * 64
        raw = measure(
            "rsa2048_sign",
            lambda: key.sign(data, padding.PKCS1v15(), hashes.SHA256()),
            0.3 if quick else 1.0,
        )
        tsa_tokens = measure("tsa_token_inprocess", lambda: tsa.respond(_tsq()), 0.3 if quick else 1.0)

    size = {"pages": pages, "pdf_KB": round(len(doc) / 1024), "sealed_KB": round(len(sealed) / 1024)}
    return [
        raw,
        Result("seal_apply_10p", n_seal, seal_s, "seals/s", {**size, "level": report.seals[0].pades_level}),
        Result("seal_verify_10p", n_verify, verify_s, "verifies/s", {"signatures": len(report.signatures)}),
        Result("tsa_token_inprocess", tsa_tokens.count, tsa_tokens.seconds, "tokens/s"),
        Result("compose_10p", 1, compose_s, "docs/s", {"pages": pages}),
    ]


def _tsq() -> bytes:
    import hashlib

    from asn1crypto import tsp

    return bytes(
        tsp.TimeStampReq(
            {
                "version": 1,
                "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": hashlib.sha256(b"x").digest()},
                "cert_req": True,
            }
        ).dump()
    )


if __name__ == "__main__":
    from bench.harness import print_table

    print_table(TITLE, run(quick=True), BASELINE)
