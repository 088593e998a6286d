"""Build hostile packages and envelopes for the bad-input tests: arbitrary ZIP bytes (lying
sizes, unsafe names, bombs) wrapped by the real CMS functions, so that each test reaches
exactly the check it means to exercise."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import zlib
from collections.abc import Sequence

from cryptography import x509

from docex.pki import cms
from docex.pki.credentials import UnitCredentials
from docex.protocols.header import RoutingHeader
from docex.protocols.manifest import FileEntry, Manifest, new_message_id


@dataclasses.dataclass(frozen=True)
class RawEntry:
    """One ZIP member written byte for byte: `data` is stored as given (raw deflate when
    method is 8) and the declared sizes and CRC may lie."""

    name: str
    data: bytes
    file_size: int
    crc: int = 0
    method: int = 8
    flags: int = 0x0800  # UTF-8 names


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def entry(name: str, data: bytes) -> RawEntry:
    """An honest member."""
    return RawEntry(name, deflate(data), len(data), zlib.crc32(data))


def raw_zip(entries: Sequence[RawEntry]) -> bytes:
    local, central = bytearray(), bytearray()
    for e in entries:
        name = e.name.encode("utf-8")
        offset = len(local)
        local += struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, e.flags, e.method, 0, 0x21, e.crc, len(e.data), e.file_size, len(name), 0
        )
        local += name + e.data
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, e.flags, e.method, 0, 0x21, e.crc, len(e.data),
            e.file_size, len(name), 0, 0, 0, 0, 0, offset,
        )
        central += name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(local), 0)
    return bytes(local + central + end)


def zeros_bomb(megabytes: int) -> tuple[bytes, int]:
    """Raw deflate of `megabytes` MB of zeros, built without ever holding them: one 1 MB
    block compressed once after a full flush repeats byte for byte. Returns (data, crc)."""
    chunk = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(megabytes):
        crc = zlib.crc32(chunk, crc)
    return piece * megabytes + b"\x03\x00", crc


def manifest(sender: str, recipients: Sequence[str], files: dict[str, bytes], **kw: object) -> Manifest:
    """A manifest whose file list matches `files` (override `files=` to make it lie)."""
    entries = tuple(FileEntry(n, hashlib.sha256(d).hexdigest(), len(d)) for n, d in files.items())
    base = Manifest(
        message_id=new_message_id(), sender=sender, recipients=tuple(recipients), title="测试公文",
        doc_number="阳办发〔2011〕42号", files=entries,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def package(m: Manifest, files: dict[str, bytes]) -> bytes:
    return raw_zip([entry("manifest.json", m.to_json()), *(entry(n, d) for n, d in files.items())])


def header_for(m: Manifest, size: int, **overrides: object) -> RoutingHeader:
    header = RoutingHeader(
        message_id=m.message_id, sender=m.sender, recipients=m.recipients, cc=m.cc, priority=m.priority,
        classification=m.classification, size=size, created_at=m.created_at, doc_number=m.doc_number,
        title=m.title,
    )
    return dataclasses.replace(header, **overrides)  # type: ignore[arg-type]


def wrap(
    package_bytes: bytes,
    m: Manifest,
    signer: UnitCredentials,
    recipients: Sequence[x509.Certificate],
    *,
    outer_signer: UnitCredentials | None = None,
    inner_content_type: str = "data",
    old_shape: bool = False,
    **header_overrides: object,
) -> bytes:
    """Triple-wrap arbitrary package bytes exactly as `envelope.pack` does, but without its
    checks: the inner signature by `signer`, the outer by `outer_signer` (default `signer`).
    `old_shape`: as docex did before RFC 5083 §2.1 / RFC 5652 §5.2 conformance (no authAttrs,
    the outer eContent a whole ContentInfo)."""
    inner = cms.sign(package_bytes, signer.sign_cert, signer.sign_key, content_type=inner_content_type)
    if old_shape:
        encrypted = cms.encrypt(inner, recipients, content_type="data")
        encrypted = encrypted.replace(b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x01",
                                      b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02", 1)
    else:
        encrypted = cms.content_of(cms.encrypt(inner, recipients), "authenticated_enveloped_data")
    size = header_overrides.pop("size", len(encrypted))
    header = header_for(m, size, **header_overrides)  # type: ignore[arg-type]
    outer = outer_signer or signer
    return cms.sign(
        encrypted, outer.sign_cert, outer.sign_key, content_type="authenticated_enveloped_data",
        attributes={"docex_routing_header": header.to_json()},
    )
