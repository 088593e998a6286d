"""Packing and opening a large document (the format is in docex.protocols.chunks). The big
file is read and written in chunk-sized pieces: a process holds one chunk at a time,
whatever the file's size."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from docex.pki import cms
from docex.pki.credentials import UnitCredentials
from docex.pki.names import CertRole
from docex.pki.trust import TrustStore
from docex.protocols.chunks import (
    CHUNKS_NAME,
    ChunkKey,
    ChunkList,
    chunk_list,
    chunk_size_for,
    file_digest,
    open_chunk,
)
from docex.protocols.envelope import pack_layers
from docex.protocols.errors import DocexError
from docex.protocols.manifest import Manifest
from docex.protocols.package import check_filename


@dataclass(frozen=True)
class LargePack:
    envelope: bytes  # the small signed envelope (its header lists the chunks)
    inner: bytes  # its inner SignedData, which the sender keeps as evidence
    key: ChunkKey  # the sender keeps it to rebuild any chunk (docex.protocols.chunks.seal_chunk)
    chunks: ChunkList


def pack_large(
    manifest: Manifest,
    files: Mapping[str, bytes],
    big: Path,
    sender: UnitCredentials,
    recipient_certs: Sequence[x509.Certificate],
    *,
    name: str | None = None,
    main_document: str | None = None,
    off_network: frozenset[str] = frozenset(),
    chunk_size: int | None = None,
) -> LargePack:
    """The small envelope of a document whose file `big` travels in chunks. Reads the file
    twice (its digest, then each chunk sealed once for its digest), never whole."""
    name = check_filename(name or big.name)
    if name in files or name == CHUNKS_NAME:
        raise DocexError("unsafe_filename", f"{name!r} is already a file of the package")
    with big.open("rb") as fh:
        sha256, size = file_digest(fh)
        key = ChunkKey.new(name, size, sha256, chunk_size or chunk_size_for(size))
        # the sender's signature over the big file alone, streamed: detached CMS SignedData
        signature = cms.sign(b"", sender.sign_cert, sender.sign_key, detached_digest=bytes.fromhex(sha256))
        key = replace(key, signature=signature).validate()
        chunks = chunk_list(fh, key, manifest.message_id)
    envelope, inner = pack_layers(manifest, {**files, CHUNKS_NAME: key.to_json()}, sender, recipient_certs,
                                  main_document=main_document, off_network=off_network, chunks=chunks)
    return LargePack(envelope, inner, key, chunks)


def assemble(
    key: ChunkKey,
    chunks: ChunkList,
    message_id: str,
    read_chunk: Callable[[int], bytes | None],
    out: Path,
    trust: TrustStore,
    signer: x509.Certificate,
) -> Path:
    """Open every chunk in order into `out` (written aside, fsynced, renamed: never half a
    file), then check the whole file's SHA-256 and the sender's detached signature over it,
    made by the same key as the envelope (`signer`). `read_chunk(i)` gives the message of
    chunk i, or None if it has not arrived (`chunk_missing`)."""
    key.matches(chunks)
    tmp = out.with_name(out.name + ".part")
    h = hashlib.sha256()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            for index in range(chunks.count):
                body = read_chunk(index)
                if body is None:
                    raise DocexError("chunk_missing", f"chunk {index} of {chunks.count} has not arrived")
                chunks.authenticate(index, body)
                plain = open_chunk(key, message_id, index, body)
                if len(plain) != chunks.plain_size(index):
                    raise DocexError("chunk_invalid", f"chunk {index} holds {len(plain)} bytes, not its share")
                h.update(plain)
                fh.write(plain)
            fh.flush()
            os.fsync(fh.fileno())
        if h.hexdigest() != key.sha256:
            raise DocexError("digest_mismatch", f"{key.name} does not match its SHA-256 in the signed package")
        verified = cms.verify(key.signature, trust, role=CertRole.SEAL, detached_digest=bytes.fromhex(key.sha256))
        if verified.signer.fingerprint(hashes.SHA256()) != signer.fingerprint(hashes.SHA256()):
            raise DocexError("sender_mismatch", f"{key.name} is signed by another key than the envelope")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
