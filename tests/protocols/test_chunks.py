"""Large documents in chunks (docex.protocols.chunks, docex.protocols.large): every chunk
authenticated on its own against the signed header, bound to its document and position;
the big file signed by a detached CMS signature computed streaming. A tampered, misplaced,
reordered or missing chunk is refused with a named error; OpenSSL and a third party with
hashlib and cryptography alone read the format."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms as asn1_cms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

from docex.pki.credentials import UnitCredentials
from docex.protocols import envelope as env
from docex.protocols.chunks import (
    CHUNKS_NAME,
    MIN_CHUNK_SIZE,
    ChunkKey,
    ChunkList,
    open_chunk,
    seal_chunk,
    sealed_chunks,
)
from docex.protocols.errors import DocexError
from docex.protocols.header import RoutingHeader
from docex.protocols.large import LargePack, assemble, pack_large
from docex.protocols.manifest import new_message_id
from tests.conftest import Pki
from tests.protocols import forge
from tests.protocols.conftest import A, B

CHUNK = MIN_CHUNK_SIZE
SMALL = {"正文.pdf": b"%PDF-1.7\n" + b"x" * 3000}


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "附件-影像.tif"
    path.write_bytes(os.urandom(3 * CHUNK + 1234))  # four chunks, the last one short
    return path


@pytest.fixture(scope="module")
def packed(big: Path, a: UnitCredentials, b: UnitCredentials) -> LargePack:
    m = forge.manifest(A, [B], SMALL)
    return pack_large(m, SMALL, big, a, [b.enc_cert], main_document="正文.pdf", chunk_size=CHUNK)


def _chunks(packed: LargePack, big: Path) -> list[bytes]:
    mid = env.read_header(packed.envelope).message_id
    with big.open("rb") as fh:
        return [body for _, body in sealed_chunks(fh, packed.key, mid)]


def _err(fn: object, *args: object) -> str:
    with pytest.raises(DocexError) as exc:
        fn(*args)  # type: ignore[operator]
    return exc.value.code


def test_a_large_document_travels_and_opens(packed: LargePack, big: Path, b: UnitCredentials, pki: Pki,
                                             tmp_path: Path) -> None:
    header = env.verify_outer(packed.envelope, pki.trust()).header
    assert header.chunks == packed.chunks and header.chunks.count == 4 and header.chunks.size == big.stat().st_size
    opened = env.open_envelope(packed.envelope, b, pki.trust())
    assert set(opened.files) == set(SMALL) and opened.chunk_key is not None  # chunks.json is not a file
    bodies = _chunks(packed, big)
    assert [hashlib.sha256(x).hexdigest() for x in bodies] == list(header.chunks.digests)  # rebuilt identically
    out = assemble(opened.chunk_key, header.chunks, header.message_id, lambda i: bodies[i], tmp_path / "out.tif",
                   pki.trust(), opened.signer)
    assert out.read_bytes() == big.read_bytes()


def test_the_hub_authenticates_each_chunk_alone(packed: LargePack, big: Path) -> None:
    chunks, bodies = packed.chunks, _chunks(packed, big)
    for i, body in enumerate(bodies):
        assert chunks.authenticate(i, body) == i
    tampered = bytearray(bodies[1])
    tampered[-40] ^= 1
    assert _err(chunks.authenticate, 1, bytes(tampered)) == "chunk_invalid"
    assert _err(chunks.authenticate, 2, bodies[1]) == "chunk_invalid"  # the right chunk at the wrong index
    assert _err(chunks.authenticate, 4, bodies[3]) == "chunk_index"
    assert _err(chunks.authenticate, -1, bodies[0]) == "chunk_index"
    assert _err(chunks.authenticate, "1", bodies[1]) == "chunk_invalid"  # an index is an integer
    assert _err(chunks.authenticate, 0, bodies[0] + b"x" * 2000) == "too_large"


def test_a_chunk_opens_only_as_itself(packed: LargePack, big: Path, tmp_path: Path, pki: Pki) -> None:
    mid = env.read_header(packed.envelope).message_id
    key, bodies = packed.key, _chunks(packed, big)
    assert open_chunk(key, mid, 0, bodies[0]) == big.read_bytes()[:CHUNK]
    # moved to another place or another document: the binding in the GCM tag says no
    assert _err(open_chunk, key, mid, 1, bodies[0]) == "chunk_misplaced"
    assert _err(open_chunk, key, new_message_id(), 0, bodies[0]) == "chunk_misplaced"
    other = ChunkKey.new(key.name, key.size, key.sha256, key.chunk_size)
    assert _err(open_chunk, other, mid, 0, bodies[0]) == "chunk_misplaced"
    # the same key id with another key: the key does not unwrap
    assert _err(open_chunk, dataclasses.replace(other, key_id=key.key_id), mid, 0, bodies[0]) == "decryption_failed"
    # a changed ciphertext byte fails the tag
    flipped = bytearray(bodies[2])
    flipped[len(flipped) // 2] ^= 0x40
    assert _err(open_chunk, key, mid, 2, bytes(flipped)) == "decryption_failed"
    assert _err(open_chunk, key, mid, 0, b"\x30\x03\x02\x01\x00") == "chunk_invalid"
    assert _err(open_chunk, key, mid, 0, b"not DER") == "chunk_invalid"


def test_missing_reordered_and_tampered_chunks_never_make_a_file(packed: LargePack, big: Path, b: UnitCredentials,
                                                                 pki: Pki, tmp_path: Path) -> None:
    opened = env.open_envelope(packed.envelope, b, pki.trust())
    header, key = opened.header, opened.chunk_key
    assert header.chunks is not None and key is not None
    bodies = _chunks(packed, big)
    out = tmp_path / "out.tif"

    def run(read: object) -> str:
        return _err(assemble, key, header.chunks, header.message_id, read, out, pki.trust(), opened.signer)

    assert run(lambda i: None if i == 2 else bodies[i]) == "chunk_missing"
    assert run(lambda i: bodies[[1, 0, 2, 3][i]]) == "chunk_invalid"  # reordered
    tampered = bytearray(bodies[3])
    tampered[-1] ^= 1
    assert run(lambda i: bytes(tampered) if i == 3 else bodies[i]) == "chunk_invalid"
    # a signer other than the envelope's: the detached signature names who signed the big file
    other = pki.creds("qingyuan.yangshan.fgj")
    assert _err(assemble, key, header.chunks, header.message_id, lambda i: bodies[i], out, pki.trust(),
                other.sign_cert) == "sender_mismatch"
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_header_and_package_must_describe_the_same_file(packed: LargePack, b: UnitCredentials, big: Path,
                                                        a: UnitCredentials, pki: Pki) -> None:
    m = forge.manifest(A, [B], SMALL)
    fake = ChunkList(packed.chunks.size + CHUNK, CHUNK, (*packed.chunks.digests, "0" * 64))
    lying = env.pack(m, {**SMALL, CHUNKS_NAME: packed.key.to_json()}, a, [b.enc_cert], chunks=fake)
    with pytest.raises(DocexError) as exc:
        env.open_envelope(lying, b, pki.trust())
    assert exc.value.code == "signature_invalid"
    no_key = env.pack(forge.manifest(A, [B], SMALL), SMALL, a, [b.enc_cert], chunks=packed.chunks)
    with pytest.raises(DocexError) as exc:
        env.open_envelope(no_key, b, pki.trust())
    assert exc.value.code == "signature_invalid"


@pytest.mark.parametrize("change", [
    {"chunk_size": 1000}, {"chunk_size": 64 * 1024 * 1024}, {"size": 0}, {"size": 10 * CHUNK},
    {"digests": ["A" * 64] * 4}, {"digests": "abc"}, {"size": "12"}, {"size": True}, {"digests": ["0" * 64] * 5000},
])
def test_every_field_of_the_chunk_list_is_checked_at_parse(packed: LargePack, change: dict[str, object]) -> None:
    data = {**packed.chunks.to_dict(), **change}
    with pytest.raises(DocexError) as exc:
        ChunkList.from_dict(data)
    assert exc.value.code == "chunk_invalid"


def test_the_routing_header_carries_the_list_and_a_whole_documents_header_is_unchanged(packed: LargePack) -> None:
    header = env.read_header(packed.envelope)
    again = RoutingHeader.from_json(header.to_json())
    assert again.chunks == packed.chunks
    plain = dataclasses.replace(header, chunks=None)
    assert "chunks" not in json.loads(plain.to_json())
    raw = json.loads(header.to_json())
    raw["message_id"] = "../../etc"
    with pytest.raises(DocexError):
        RoutingHeader.from_json(json.dumps(raw).encode())
    raw = json.loads(header.to_json())
    raw["chunks"]["chunk_size"] = -1
    with pytest.raises(DocexError) as exc:
        RoutingHeader.from_json(json.dumps(raw).encode())
    assert exc.value.code == "chunk_invalid"


@pytest.mark.parametrize("field,value", [("key", "AAAA"), ("key_id", "zz"), ("name", "../x"), ("sha256", "x"),
                                         ("format", 2), ("size", -5)])
def test_chunks_json_is_checked_at_parse(packed: LargePack, field: str, value: object) -> None:
    raw = json.loads(packed.key.to_json())
    raw[field] = value
    with pytest.raises(DocexError) as exc:
        ChunkKey.from_json(json.dumps(raw).encode())
    assert exc.value.code in ("chunk_invalid", "unsafe_filename")


def _openssl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", "cms", *args], capture_output=True)


def test_openssl_opens_a_chunk_with_the_chunk_key(packed: LargePack, big: Path, tmp_path: Path) -> None:
    body = _chunks(packed, big)[3]
    (tmp_path / "chunk3.der").write_bytes(body)
    opened = _openssl("-decrypt", "-binary", "-inform", "DER", "-in", str(tmp_path / "chunk3.der"),
                      "-secretkey", packed.key.key.hex(), "-secretkeyid", packed.key.key_id.hex(),
                      "-out", str(tmp_path / "chunk3.bin"))
    assert opened.returncode == 0, opened.stderr
    assert (tmp_path / "chunk3.bin").read_bytes() == big.read_bytes()[3 * CHUNK:]
    printed = _openssl("-cmsout", "-print", "-inform", "DER", "-in", str(tmp_path / "chunk3.der")).stdout.decode()
    assert "d.kekri" in printed and "id-aes256-wrap" in printed and "aes-256-gcm" in printed
    # a byte of the bound attributes changed (chunk 3 claims to be chunk 2): OpenSSL's tag check fails too
    forged = body.replace(b'"index":3', b'"index":2')
    assert forged != body
    (tmp_path / "forged.der").write_bytes(forged)
    refused = _openssl("-decrypt", "-binary", "-inform", "DER", "-in", str(tmp_path / "forged.der"),
                       "-secretkey", packed.key.key.hex(), "-secretkeyid", packed.key.key_id.hex(),
                       "-out", str(tmp_path / "forged.bin"))
    assert refused.returncode != 0


def test_openssl_verifies_the_detached_signature_over_the_big_file(packed: LargePack, big: Path, pki: Pki,
                                                                  tmp_path: Path) -> None:
    (tmp_path / "big.p7s").write_bytes(packed.key.signature)
    ca = str(pki.county.directory / "ca.crt")
    ok = _openssl("-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "big.p7s"), "-content", str(big),
                  "-CAfile", ca, "-purpose", "any", "-out", os.devnull)
    assert ok.returncode == 0, ok.stderr
    changed = tmp_path / "changed.tif"
    changed.write_bytes(big.read_bytes()[:-1] + b"\x00")
    bad = _openssl("-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "big.p7s"), "-content",
                   str(changed), "-CAfile", ca, "-purpose", "any", "-out", os.devnull)
    assert bad.returncode != 0


def test_a_third_party_reads_a_chunk_with_hashlib_and_aesgcm(packed: LargePack, big: Path) -> None:
    """The format as the module's docstring states it, read without docex: the digest the
    header lists, the key unwrapped (RFC 3394), AES-256-GCM with the authAttrs' DER as AAD."""
    mid = env.read_header(packed.envelope).message_id
    body = _chunks(packed, big)[1]
    assert hashlib.sha256(body).hexdigest() == packed.chunks.digests[1]
    info = asn1_cms.ContentInfo.load(body)
    aed = info["content"]
    kekri = aed["recipient_infos"][0].chosen
    assert kekri["kekid"]["key_identifier"].native == packed.key.key_id
    cek = aes_key_unwrap(packed.key.key, kekri["encrypted_key"].native)
    eci = aed["auth_encrypted_content_info"]
    nonce = eci["content_encryption_algorithm"]["parameters"]["aes_nonce"].native
    attrs = aed["auth_attrs"]
    bound = [a["values"][0].native for a in attrs if a["type"].dotted != "1.2.840.113549.1.9.3"]  # not contentType
    assert [json.loads(x) for x in bound] == [{"count": 4, "index": 1, "message_id": mid}]
    aad = b"\x31" + attrs.dump()[1:]
    plain = AESGCM(cek).decrypt(nonce, eci["encrypted_content"].native + aed["mac"].native, aad)
    assert plain == big.read_bytes()[CHUNK:2 * CHUNK]


def test_a_chunk_is_rebuilt_byte_for_byte(packed: LargePack, big: Path) -> None:
    """A sender that restarts rebuilds exactly what the header committed to."""
    mid = env.read_header(packed.envelope).message_id
    data = big.read_bytes()
    assert seal_chunk(packed.key, mid, 2, data[2 * CHUNK:3 * CHUNK]) == _chunks(packed, big)[2]
    assert _err(seal_chunk, packed.key, mid, 4, b"x") == "chunk_index"
