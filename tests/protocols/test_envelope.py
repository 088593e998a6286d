"""The triple-wrapped envelope: round trip, the OpenSSL-only unwrap the README promises,
and every bad input the issue names, each refused with its code."""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from docex.pki import cms
from docex.pki.credentials import UnitCredentials
from docex.pki.errors import PkiError
from docex.protocols import envelope as env
from docex.protocols import package as pkg
from docex.protocols.manifest import Manifest, new_message_id
from tests.conftest import Pki
from tests.protocols import forge
from tests.protocols.conftest import A, B, C

PDF = b"%PDF-1.7\n" + os.urandom(4000)
NOTE = "附件一：名单".encode()


def _manifest(**kw: object) -> Manifest:
    base = Manifest(
        message_id=new_message_id(), sender=A, recipients=(B,), title="关于做好电子公文交换试点工作的通知",
        doc_number="阳办发〔2011〕42号", priority="加急", fields={"signer": "张三"},
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sealed(a: UnitCredentials, b: UnitCredentials) -> tuple[Manifest, bytes]:
    m = _manifest()
    return m, env.pack(m, {"正文.pdf": PDF, "附件1.txt": NOTE}, a, [b.enc_cert], main_document="正文.pdf")


def _code(excinfo: pytest.ExceptionInfo[PkiError]) -> str:
    return excinfo.value.code


# -- round trip -------------------------------------------------------------------------------


def test_round_trip(sealed: tuple[Manifest, bytes], b: UnitCredentials, pki: Pki) -> None:
    m, data = sealed
    opened = env.open_envelope(data, b, pki.trust())
    assert opened.files == {"正文.pdf": PDF, "附件1.txt": NOTE}
    assert opened.manifest.message_id == m.message_id
    assert opened.manifest.doc_number == "阳办发〔2011〕42号"
    assert {f.name: f.role for f in opened.manifest.files} == {"正文.pdf": "document", "附件1.txt": "attachment"}
    assert opened.header.sender == A and opened.header.recipients == (B,)
    assert opened.header.priority == "加急"
    assert opened.signer == pki.creds(A).sign_cert


def test_header_readable_without_keys(sealed: tuple[Manifest, bytes], pki: Pki) -> None:
    m, data = sealed
    header = env.read_header(data)
    assert (header.message_id, header.sender, header.title) == (m.message_id, A, m.title)
    outer = env.verify_outer(data, pki.trust())
    assert outer.header == header and header.size == len(_econtent(outer))
    assert b"%PDF" not in data  # the hub sees no content


def test_every_recipient_and_cc_can_open(a: UnitCredentials, b: UnitCredentials, c: UnitCredentials, pki: Pki) -> None:
    m = _manifest(cc=(C,))
    data = env.pack(m, {"a.txt": b"x"}, a, [b.enc_cert, c.enc_cert])
    for me in (b, c):
        assert env.open_envelope(data, me, pki.trust()).files == {"a.txt": b"x"}
    assert len(cms.recipient_serials(env.verify_outer(data, pki.trust()).encrypted)) == 2


def _econtent(outer: env.OuterLayer) -> bytes:
    """The outer layer's eContent as it sits in the envelope (the bare AuthEnvelopedData)."""
    return cms.content_of(outer.encrypted, "authenticated_enveloped_data")


# -- OpenSSL alone takes it apart -------------------------------------------------------------

FRAME = Path(__file__).resolve().parents[2] / "scripts" / "cms-frame.sh"


def _openssl_unwrap(envelope: Path, unit_dir: Path, ca: Path, work: Path) -> bytes | None:
    """The commands of the README, verbatim; None as soon as one of them fails."""
    bare, l2, l3, out = work / "L2.bare", work / "L2", work / "L3", work / "package.zip"
    steps = [
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-CAfile", str(ca), "-in", str(envelope), "-out", str(bare)],
        ["sh", "-c", f'"{FRAME}" "{bare}" > "{l2}"'],
        ["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", str(l2),
         "-recip", str(unit_dir / "enc.crt"), "-inkey", str(unit_dir / "enc.key"), "-out", str(l3)],
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-CAfile", str(ca), "-in", str(l3), "-out", str(out)],
    ]
    for step in steps:
        if subprocess.run(step, capture_output=True).returncode != 0:
            return None
    return out.read_bytes()


def test_openssl_unwraps_to_the_package(sealed: tuple[Manifest, bytes], pki: Pki, tmp_path: Path) -> None:
    m, data = sealed
    path = tmp_path / "doc.env"
    path.write_bytes(data)
    raw = _openssl_unwrap(path, pki.unit_dir(B), pki.county.directory / "ca.crt", tmp_path)
    assert raw is not None
    package = pkg.read(raw)
    assert package.manifest.message_id == m.message_id
    assert package.files["正文.pdf"] == PDF


def _positions(data: bytes, encrypted: bytes) -> dict[str, int]:
    start = data.find(encrypted)
    return {
        "routing header": data.find(b'"message_id"') + 3,
        "middle of ciphertext": start + len(encrypted) // 2,
        "signer certificate": data.find(b"urn:docex:unit:") + 5,
        "signature": len(data) - 100,
        "last byte": len(data) - 1,
    }


def test_changed_byte_fails_openssl_and_docex(sealed: tuple[Manifest, bytes], pki: Pki, tmp_path: Path) -> None:
    _, data = sealed
    outer = env.verify_outer(data, pki.trust())
    for where, pos in _positions(data, _econtent(outer)).items():
        changed = bytearray(data)
        changed[pos] ^= 0x01
        path = tmp_path / "changed.env"
        path.write_bytes(changed)
        assert _openssl_unwrap(path, pki.unit_dir(B), pki.county.directory / "ca.crt", tmp_path) is None, where
        with pytest.raises(PkiError) as exc:
            env.open_envelope(bytes(changed), pki.creds(B), pki.trust())
        assert exc.value.code in {"signature_invalid", "certificate_untrusted", "malformed_envelope"}, where


def test_no_single_byte_change_is_accepted(sealed: tuple[Manifest, bytes], pki: Pki) -> None:
    """Every byte of the structure (versions and digest list included, which no signature
    covers) and a sample of the ciphertext: refused with a named code, never a crash."""
    _, data = sealed
    trust, me = pki.trust(), pki.creds(B)
    outer = env.verify_outer(data, trust)
    start = data.find(_econtent(outer))
    end = start + len(_econtent(outer))
    positions = [*range(0, start + 64), *range(start + 64, end, 509), *range(end, len(data), 7)]
    info = cms._ContentInfo.load(data)
    signer_infos = info["content"]["signer_infos"].dump()
    positions.append(data.rfind(signer_infos) + signer_infos.find(b"\x02\x01\x01") + 2)  # SignerInfo version
    codes = set()
    for pos in positions:
        changed = bytearray(data)
        changed[pos] ^= 0x01
        with pytest.raises(PkiError) as exc:
            env.open_envelope(bytes(changed), me, trust)
        codes.add(exc.value.code)
    assert codes <= {"signature_invalid", "certificate_untrusted", "malformed_envelope", "wrong_certificate_role"}


def test_truncated_and_random_bytes_are_malformed(sealed: tuple[Manifest, bytes], b: UnitCredentials, pki: Pki) -> None:
    _, data = sealed
    rng = random.Random(7)
    samples = [data[:n] for n in (0, 1, 2, 10, 100, len(data) // 2, len(data) - 1)]
    samples += [rng.randbytes(n) for n in (1, 50, 3000)] + [b"\x30\x82" + rng.randbytes(2000)]
    for bad in samples:
        with pytest.raises(PkiError) as exc:
            env.open_envelope(bad, b, pki.trust())
        assert exc.value.code == "malformed_envelope"
        with pytest.raises(PkiError) as exc:
            env.read_header(bad)
        assert exc.value.code == "malformed_envelope"


# -- who may open, who may send ---------------------------------------------------------------


def test_not_a_recipient(sealed: tuple[Manifest, bytes], c: UnitCredentials, pki: Pki) -> None:
    with pytest.raises(PkiError) as exc:
        env.open_envelope(sealed[1], c, pki.trust())
    assert _code(exc) == "not_a_recipient"


def test_listed_but_not_encrypted_for(a: UnitCredentials, b: UnitCredentials, c: UnitCredentials, pki: Pki) -> None:
    """The header names C but no key was wrapped for C: still not_a_recipient."""
    files = {"a.txt": b"x"}
    m = forge.manifest(A, [B, C], files)
    data = forge.wrap(forge.package(m, files), m, a, [b.enc_cert])
    with pytest.raises(PkiError) as exc:
        env.open_envelope(data, c, pki.trust())
    assert _code(exc) == "not_a_recipient"


def test_pack_needs_every_recipients_certificate(a: UnitCredentials, b: UnitCredentials) -> None:
    with pytest.raises(PkiError) as exc:
        env.pack(_manifest(cc=(C,)), {"a.txt": b"x"}, a, [b.enc_cert])
    assert exc.value.code == "unknown_recipient"


def test_pack_refuses_another_units_manifest(b: UnitCredentials) -> None:
    with pytest.raises(PkiError) as exc:
        env.pack(_manifest(), {"a.txt": b"x"}, b, [b.enc_cert])
    assert exc.value.code == "sender_mismatch"


@pytest.mark.parametrize("level", ["秘密", "机密", "绝密"])
def test_classified_refused_at_pack(level: str, a: UnitCredentials, b: UnitCredentials) -> None:
    with pytest.raises(PkiError) as exc:
        env.pack(_manifest(classification=level), {"a.txt": b"x"}, a, [b.enc_cert])
    assert exc.value.code == "classified"


def test_header_claims_another_sender(a: UnitCredentials, b: UnitCredentials, c: UnitCredentials, pki: Pki) -> None:
    """C's key and certificate are valid, but the envelope says it comes from A."""
    files = {"a.txt": b"x"}
    m = forge.manifest(A, [B], files)
    data = forge.wrap(forge.package(m, files), m, c, [b.enc_cert])
    with pytest.raises(PkiError) as exc:
        env.verify_outer(data, pki.trust())
    assert _code(exc) == "sender_mismatch"
    with pytest.raises(PkiError) as exc:
        env.open_envelope(data, b, pki.trust())
    assert _code(exc) == "sender_mismatch"


def test_inner_signed_by_someone_else(a: UnitCredentials, b: UnitCredentials, c: UnitCredentials, pki: Pki) -> None:
    files = {"a.txt": b"x"}
    m = forge.manifest(A, [B], files)
    data = forge.wrap(forge.package(m, files), m, c, [b.enc_cert], outer_signer=a)
    with pytest.raises(PkiError) as exc:
        env.open_envelope(data, b, pki.trust())
    assert _code(exc) == "sender_mismatch"


def test_revoked_sender(b: UnitCredentials, pki: Pki) -> None:
    sender = pki.new_unit("qingyuan.yangshan.revoked", "已撤销单位")
    m = _manifest(sender=sender.address)
    data = env.pack(m, {"a.txt": b"x"}, sender, [b.enc_cert])
    assert env.open_envelope(data, b, pki.trust()).files == {"a.txt": b"x"}
    pki.county.revoke(sender.sign_cert.serial_number, "key_compromise")
    with pytest.raises(PkiError) as exc:
        env.open_envelope(data, b, pki.trust())
    assert _code(exc) == "certificate_revoked"


def test_sender_from_an_untrusted_ca(b: UnitCredentials, pki: Pki) -> None:
    sender = pki.new_unit("qingyuan.yangshan.fake", "冒名单位", ca=pki.stranger)
    data = env.pack(_manifest(sender=sender.address), {"a.txt": b"x"}, sender, [b.enc_cert])
    with pytest.raises(PkiError) as exc:
        env.open_envelope(data, b, pki.trust())
    assert _code(exc) == "certificate_untrusted"


def test_city_issued_sender_needs_the_city_anchor(b: UnitCredentials, pki: Pki) -> None:
    xwb = pki.creds("qingyuan.yangshan.xwb")
    data = env.pack(_manifest(sender=xwb.address), {"a.txt": b"x"}, xwb, [b.enc_cert])
    assert env.open_envelope(data, b, pki.trust(city=True)).header.sender == xwb.address
    with pytest.raises(PkiError) as exc:
        env.open_envelope(data, b, pki.trust(city=False))
    assert _code(exc) == "certificate_untrusted"


def test_encryption_certificate_cannot_sign(a: UnitCredentials, b: UnitCredentials, pki: Pki) -> None:
    files = {"a.txt": b"x"}
    m = forge.manifest(A, [B], files)
    as_enc = dataclasses.replace(a, sign_cert=a.enc_cert, sign_key=a.enc_key)
    data = forge.wrap(forge.package(m, files), m, a, [b.enc_cert], outer_signer=as_enc)
    with pytest.raises(PkiError) as exc:
        env.open_envelope(data, b, pki.trust())
    assert _code(exc) == "wrong_certificate_role"


# -- what the package holds -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "/etc/x", "a/../../x", "..\\x"])
def test_unsafe_filename(name: str, a: UnitCredentials, b: UnitCredentials, pki: Pki) -> None:
    files = {name: b"owned"}
    m = forge.manifest(A, [B], files)
    data = forge.wrap(forge.package(m, files), m, a, [b.enc_cert])
    with pytest.raises(PkiError) as exc:
        env.open_envelope(data, b, pki.trust())
    assert exc.value.code == "unsafe_filename"


def test_zip_bomb_is_too_large_without_inflating(a: UnitCredentials, b: UnitCredentials, pki: Pki) -> None:
    bomb, crc = forge.zeros_bomb(300)
    m = forge.manifest(A, [B], {"bomb.bin": b""})
    zipped = forge.raw_zip([forge.entry("manifest.json", m.to_json()), forge.RawEntry("bomb.bin", bomb, 300 << 20, crc)])
    data = forge.wrap(zipped, m, a, [b.enc_cert])
    tracemalloc.start()
    try:
        with pytest.raises(PkiError) as exc:
            env.open_envelope(data, b, pki.trust())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert exc.value.code == "too_large"
    assert peak < 32 << 20  # it never inflated the 300 MB


def test_digest_mismatch(a: UnitCredentials, b: UnitCredentials, pki: Pki) -> None:
    files = {"正文.pdf": PDF}
    m = forge.manifest(A, [B], {"正文.pdf": b"what the manifest promised"})
    data = forge.wrap(forge.package(m, files), m, a, [b.enc_cert])
    with pytest.raises(PkiError) as exc:
        env.open_envelope(data, b, pki.trust())
    assert exc.value.code == "digest_mismatch"


def test_header_must_match_the_signed_manifest(a: UnitCredentials, b: UnitCredentials, pki: Pki) -> None:
    files = {"a.txt": b"x"}
    m = forge.manifest(A, [B], files)
    data = forge.wrap(forge.package(m, files), m, a, [b.enc_cert], priority="特急", title="另一个标题")
    with pytest.raises(PkiError) as exc:
        env.open_envelope(data, b, pki.trust())
    assert exc.value.code == "signature_invalid"


def test_unsupported_version(a: UnitCredentials, b: UnitCredentials, pki: Pki) -> None:
    files = {"a.txt": b"x"}
    m = forge.manifest(A, [B], files)
    data = forge.wrap(forge.package(m, files), m, a, [b.enc_cert], protocol_version="99")
    assert env.read_header(data).protocol_version == "99"
    with pytest.raises(PkiError) as exc:
        env.open_envelope(data, b, pki.trust())
    assert exc.value.code == "unsupported_version"


def test_wrong_size_in_header(a: UnitCredentials, b: UnitCredentials, pki: Pki) -> None:
    files = {"a.txt": b"x"}
    m = forge.manifest(A, [B], files)
    data = forge.wrap(forge.package(m, files), m, a, [b.enc_cert], size=1)
    with pytest.raises(PkiError) as exc:
        env.verify_outer(data, pki.trust())
    assert exc.value.code == "malformed_envelope"


def test_inner_layer_must_be_the_package(a: UnitCredentials, b: UnitCredentials, pki: Pki) -> None:
    files = {"a.txt": b"x"}
    m = forge.manifest(A, [B], files)
    data = forge.wrap(forge.package(m, files), m, a, [b.enc_cert], inner_content_type="signed_data")
    with pytest.raises(PkiError) as exc:
        env.open_envelope(data, b, pki.trust())
    assert exc.value.code == "malformed_envelope"


def test_envelope_too_large(sealed: tuple[Manifest, bytes], b: UnitCredentials, pki: Pki) -> None:
    with pytest.raises(PkiError) as exc:
        env.open_envelope(sealed[1], b, pki.trust(), max_size=len(sealed[1]) - 1)
    assert exc.value.code == "too_large"


def test_package_too_large(a: UnitCredentials, b: UnitCredentials, pki: Pki) -> None:
    data = env.pack(_manifest(), {"big.bin": os.urandom(20_000)}, a, [b.enc_cert])
    with pytest.raises(PkiError) as exc:
        env.open_envelope(data, b, pki.trust(), max_unpacked=10_000)
    assert exc.value.code == "too_large"
