"""Large documents travel in chunks: a small signed envelope, then the big file in pieces,
each encrypted and authenticated on its own, all bound by the envelope's signed header.

The small envelope is the usual triple wrap. Its package holds, beside the sealed PDF,
``chunks.json`` (:class:`ChunkKey`: the big file's name, size and SHA-256, the chunk size,
the document's 256-bit chunk key and its key id, and a *detached* CMS SignedData by the
sender over the big file, computed streaming over its bytes). Its routing header (signed,
readable by every hub) carries :class:`ChunkList`: the big file's size, the chunk size,
and the SHA-256 of every chunk message, so that a hub authenticates each chunk on its own
without decrypting anything.

Chunk ``i`` (0-based; every chunk holds ``chunk_size`` bytes of the file, the last one the
rest) is a DER CMS ContentInfo of AuthEnvelopedData (RFC 5083, AES-256-GCM per RFC 5084):

* one KEKRecipientInfo (version 4): keyIdentifier = the key id, key-encryption algorithm
  id-aes256-wrap (RFC 3394), encryptedKey = the chunk's content-encryption key wrapped
  under the document's chunk key;
* authAttrs: content-type id-data and ``docex_chunk`` (OID DOCEX_ARC.2.3, see
  ``docex.pki.cms.ATTRIBUTE_OIDS``), an OCTET STRING holding the JSON
  ``{"count": n, "index": i, "message_id": "<uuid>"}`` (sorted keys, no spaces). Their DER
  (as a SET OF) is the GCM additional data: the message id and the index are bound into
  the tag, so a chunk moved to another place or another document fails to open;
* authEncryptedContentInfo: id-data, aes256-GCM with a 12-byte nonce and a 16-byte tag.

The chunk's key and nonce come from HKDF-SHA256(chunk key, info = "docex chunk v1|<message
id>|<index>"): a sender that restarts rebuilds the very bytes the header committed to,
without keeping a second copy of the file (it checks each digest before publishing, so a
file changed on disk is never sent under the same key). Anyone with the chunk key opens a
chunk with ``openssl cms -decrypt -binary -inform DER -secretkey KEYHEX -secretkeyid IDHEX``;
with hashlib and cryptography's AESGCM and aes_key_unwrap as well (tests/protocols).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from asn1crypto import cms as asn1_cms
from asn1crypto import core
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from docex.pki.cms import GCM_NONCE_BYTES, GCM_TAG_BYTES, GCMParameters
from docex.protocols.errors import DocexError
from docex.protocols.identifiers import check_message_id
from docex.protocols.messages import H_CHUNK_INDEX, H_CHUNK_OF
from docex.protocols.package import check_filename

CHUNKS_NAME = "chunks.json"  # in the small envelope's package
FORMAT = 1
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
SMALLEST_DEFAULT = 1024 * 1024
MIN_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_CHUNKS = 4096  # the digests ride in the signed header: 4096 × 64 hex ≈ 260 KB at most
KEY_BYTES = 32
KEY_ID_BYTES = 16
# a chunk message: the ciphertext plus the CMS around it (recipient info, attributes, tag)
OVERHEAD_BYTES = 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _bad(message: str) -> DocexError:
    return DocexError("chunk_invalid", message)


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{what} must be an integer")
    return value


def count_for(size: int, chunk_size: int) -> int:
    return max(1, -(-size // chunk_size))


def chunk_size_for(size: int) -> int:
    """1 MiB chunks (consumers prefetch dozens of messages: that bounds what each holds),
    doubled until the file fits in MAX_CHUNKS."""
    chunk = SMALLEST_DEFAULT
    while count_for(size, chunk) > MAX_CHUNKS and chunk < MAX_CHUNK_SIZE:
        chunk *= 2
    return chunk


def chunk_address(headers: Mapping[str, object] | None) -> tuple[str, int]:
    """(message id, index) of a chunk message, from its AMQP headers, checked: a UUID and
    an index within what any chunk list allows. Nothing else may build a path or a key."""
    headers = headers or {}
    raw_id = headers.get(H_CHUNK_OF)
    if isinstance(raw_id, bytes):
        raw_id = raw_id.decode("ascii", "replace")
    message_id = check_message_id(raw_id, code="chunk_invalid", what="chunk's message id")
    index = headers.get(H_CHUNK_INDEX)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_CHUNKS:
        raise DocexError("chunk_index", f"chunk index {str(index)[:20]!r} is not one")
    return message_id, index


@dataclass(frozen=True)
class ChunkList:
    """What the signed routing header says of a large document's chunks."""

    size: int  # bytes of the big file (plaintext)
    chunk_size: int  # plaintext bytes per chunk (the last one holds the rest)
    digests: tuple[str, ...]  # SHA-256 (hex) of each chunk message, in order

    @property
    def count(self) -> int:
        return len(self.digests)

    def validate(self) -> ChunkList:
        if not MIN_CHUNK_SIZE <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise _bad(f"chunk size {self.chunk_size} is outside {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
        if self.size < 1:
            raise _bad("a chunked file has at least one byte")
        if not 1 <= self.count <= MAX_CHUNKS:
            raise _bad(f"between 1 and {MAX_CHUNKS} chunks")
        if self.count != count_for(self.size, self.chunk_size):
            raise _bad(f"{self.size} bytes in chunks of {self.chunk_size} are not {self.count} chunks")
        if not all(isinstance(d, str) and _HEX64.fullmatch(d) for d in self.digests):
            raise _bad("a chunk digest is not a SHA-256 in hex")
        return self

    def plain_size(self, index: int) -> int:
        """Plaintext bytes in chunk `index`."""
        self.check_index(index)
        return min(self.chunk_size, self.size - index * self.chunk_size)

    def max_body(self, index: int) -> int:
        return self.plain_size(index) + OVERHEAD_BYTES

    def check_index(self, index: object) -> int:
        i = _int(index, "the chunk index")
        if not 0 <= i < self.count:
            raise DocexError("chunk_index", f"chunk index {i} is outside 0..{self.count - 1}")
        return i

    def authenticate(self, index: object, body: bytes) -> int:
        """A chunk message is the one the header committed to at `index` (hubs do this
        without any key); returns the index. `chunk_index` or `chunk_invalid` otherwise."""
        i = self.check_index(index)
        if len(body) > self.max_body(i):
            raise DocexError("too_large", f"chunk {i} is {len(body)} bytes, more than its share")
        if hashlib.sha256(body).hexdigest() != self.digests[i]:
            raise _bad(f"chunk {i} is not the one the signed header names (changed, or another chunk)")
        return i

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "chunk_size": self.chunk_size, "digests": list(self.digests)}

    @classmethod
    def from_dict(cls, data: object) -> ChunkList:
        if not isinstance(data, dict):
            raise _bad("the chunk list is not an object")
        digests = data.get("digests")
        if not isinstance(digests, list):
            raise _bad("the chunk list has no digests")
        return cls(size=_int(data.get("size"), "size"), chunk_size=_int(data.get("chunk_size"), "chunk size"),
                   digests=tuple(digests)).validate()


@dataclass(frozen=True)
class ChunkKey:
    """What the encrypted, inner-signed package says of the big file (``chunks.json``)."""

    name: str
    size: int
    sha256: str  # of the big file's plaintext
    chunk_size: int
    key: bytes = b""  # the document's chunk key (KEK)
    key_id: bytes = b""
    signature: bytes = b""  # detached CMS SignedData by the sender over the big file

    @classmethod
    def new(cls, name: str, size: int, sha256: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> ChunkKey:
        return cls(name=name, size=size, sha256=sha256, chunk_size=chunk_size,
                   key=os.urandom(KEY_BYTES), key_id=os.urandom(KEY_ID_BYTES))

    @property
    def count(self) -> int:
        return count_for(self.size, self.chunk_size)

    def validate(self) -> ChunkKey:
        check_filename(self.name)
        if not (len(self.key) == KEY_BYTES and len(self.key_id) == KEY_ID_BYTES and _HEX64.fullmatch(self.sha256)):
            raise _bad("the chunk key, its id or the file's digest is not well formed")
        ChunkList(self.size, self.chunk_size, ("0" * 64,) * self.count).validate()
        return self

    def matches(self, chunks: ChunkList) -> None:
        """The signed header and the signed package describe the same file."""
        if (self.size, self.chunk_size, self.count) != (chunks.size, chunks.chunk_size, chunks.count):
            raise DocexError("signature_invalid", "the header's chunk list does not match the signed package")

    def to_json(self) -> bytes:
        data = {"format": FORMAT, "name": self.name, "size": self.size, "sha256": self.sha256,
                "chunk_size": self.chunk_size, "key": base64.b64encode(self.key).decode(),
                "key_id": self.key_id.hex(), "signature": base64.b64encode(self.signature).decode()}
        return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ChunkKey:
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise _bad("chunks.json has an unknown format")
            return cls(name=str(data["name"]), size=_int(data["size"], "size"), sha256=str(data["sha256"]),
                       chunk_size=_int(data["chunk_size"], "chunk size"),
                       key=base64.b64decode(data["key"], validate=True), key_id=bytes.fromhex(data["key_id"]),
                       signature=base64.b64decode(data["signature"], validate=True)).validate()
        except DocexError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise _bad("chunks.json is not well formed") from exc


def _binding(message_id: str, index: int, count: int) -> bytes:
    return json.dumps({"count": count, "index": index, "message_id": message_id}, sort_keys=True,
                      separators=(",", ":")).encode()


def _derive(key: bytes, message_id: str, index: int) -> tuple[bytes, bytes]:
    material = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES + GCM_NONCE_BYTES, salt=None,
                    info=f"docex chunk v1|{message_id}|{index}".encode()).derive(key)
    return material[:KEY_BYTES], material[KEY_BYTES:]


def _auth_attrs(message_id: str, index: int, count: int) -> asn1_cms.CMSAttributes:
    attrs = asn1_cms.CMSAttributes([
        asn1_cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
        asn1_cms.CMSAttribute({"type": "docex_chunk", "values": [_binding(message_id, index, count)]}),
    ])
    return asn1_cms.CMSAttributes.load(attrs.dump())


def seal_chunk(key: ChunkKey, message_id: str, index: int, plaintext: bytes) -> bytes:
    """Chunk `index` of a document as its DER message (deterministic for one key)."""
    count = key.count
    if not 0 <= index < count:
        raise DocexError("chunk_index", f"chunk index {index} is outside 0..{count - 1}")
    cek, nonce = _derive(key.key, message_id, index)
    attrs = _auth_attrs(message_id, index, count)
    sealed = AESGCM(cek).encrypt(nonce, plaintext, attrs.dump())
    enveloped = asn1_cms.AuthEnvelopedData({
        "version": "v0",
        "recipient_infos": [asn1_cms.RecipientInfo({"kekri": {
            "version": "v4",
            "kekid": {"key_identifier": key.key_id},
            "key_encryption_algorithm": {"algorithm": "aes256_wrap"},
            "encrypted_key": aes_key_wrap(key.key, cek),
        }})],
        "auth_encrypted_content_info": {
            "content_type": "data",
            "content_encryption_algorithm": {
                "algorithm": "aes256_gcm",
                "parameters": GCMParameters({"aes_nonce": nonce, "aes_icvlen": GCM_TAG_BYTES}),
            },
            "encrypted_content": sealed[:-GCM_TAG_BYTES],
        },
        "auth_attrs": attrs,
        "mac": sealed[-GCM_TAG_BYTES:],
    })
    der: bytes = asn1_cms.ContentInfo({"content_type": "authenticated_enveloped_data", "content": enveloped}).dump()
    return der


def open_chunk(key: ChunkKey, message_id: str, index: int, body: bytes) -> bytes:
    """The plaintext of chunk `index`, after checking that it is that chunk of that
    document (`chunk_misplaced`) and that not a bit changed (`decryption_failed`)."""
    count = key.count
    try:
        info = asn1_cms.ContentInfo.load(body, strict=True)
        if info["content_type"].native != "authenticated_enveloped_data":
            raise _bad("a chunk is a CMS AuthEnvelopedData")
        env = info["content"]
        infos = list(env["recipient_infos"])
        if len(infos) != 1 or infos[0].name != "kekri":
            raise _bad("a chunk has exactly one KEK recipient info")
        kekri = infos[0].chosen
        if kekri["kekid"]["key_identifier"].native != key.key_id:
            raise DocexError("chunk_misplaced", "the chunk is encrypted under another document's key")
        if kekri["key_encryption_algorithm"]["algorithm"].native != "aes256_wrap":
            raise _bad("the chunk's key is not wrapped with AES-256 key wrap")
        wrapped = kekri["encrypted_key"].native
        aeci = env["auth_encrypted_content_info"]
        alg = aeci["content_encryption_algorithm"]
        if alg["algorithm"].native != "aes256_gcm" or aeci["content_type"].native != "data":
            raise _bad("a chunk's content is id-data under AES-256-GCM")
        params = alg["parameters"]
        nonce, icvlen = params["aes_nonce"].native, params["aes_icvlen"].native
        if len(nonce) != GCM_NONCE_BYTES or icvlen != GCM_TAG_BYTES:
            raise _bad("the chunk's GCM parameters are not 12-byte nonce, 16-byte tag")
        attrs = env["auth_attrs"]
        if isinstance(attrs, core.Void) or not attrs:
            raise _bad("the chunk carries no authenticated attributes")
        named = {a["type"].native: a["values"] for a in attrs}
        if set(named) != {"content_type", "docex_chunk"} or len(attrs) != 2:
            raise _bad("the chunk's authenticated attributes are not content-type and docex-chunk")
        if named["content_type"][0].native != "data" or len(named["docex_chunk"]) != 1:
            raise _bad("the chunk's authenticated attributes are not well formed")
        bound = named["docex_chunk"][0].native
        aad = b"\x31" + attrs.dump()[1:]
        ciphertext = aeci["encrypted_content"].native
        tag = env["mac"].native
        if env["version"].native != "v0" or kekri["version"].native != "v4" or not isinstance(ciphertext, bytes):
            raise _bad("the chunk's structure has unexpected versions or no content")
    except DocexError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise _bad("the chunk is not a well-formed CMS AuthEnvelopedData") from exc
    if bound != _binding(message_id, index, count):
        raise DocexError("chunk_misplaced", f"the chunk is not chunk {index} of {count} of {message_id}")
    try:
        cek = aes_key_unwrap(key.key, wrapped)
        plain: bytes = AESGCM(cek).decrypt(nonce, ciphertext + tag, aad)
        return plain
    except (InvalidUnwrap, InvalidTag, ValueError) as exc:
        raise DocexError("decryption_failed", f"chunk {index} does not decrypt: damaged or changed") from exc


# -- files ------------------------------------------------------------------------------------
def file_digest(fh: BinaryIO, block: int = 1024 * 1024) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file read in blocks."""
    h = hashlib.sha256()
    size = 0
    while piece := fh.read(block):
        h.update(piece)
        size += len(piece)
    return h.hexdigest(), size


def read_plain_chunk(fh: BinaryIO, key: ChunkKey, index: int) -> bytes:
    fh.seek(index * key.chunk_size)
    want = min(key.chunk_size, key.size - index * key.chunk_size)
    data = fh.read(want)
    if len(data) != want:
        raise DocexError("digest_mismatch", f"{key.name} is shorter than when it was sent")
    return data


def sealed_chunks(fh: BinaryIO, key: ChunkKey, message_id: str, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(index, chunk message) from `start` on, one chunk in memory at a time."""
    check_message_id(message_id)
    for index in range(start, key.count):
        yield index, seal_chunk(key, message_id, index, read_plain_chunk(fh, key, index))


def chunk_list(fh: BinaryIO, key: ChunkKey, message_id: str) -> ChunkList:
    """Seal every chunk once, keeping only its digest: what the header commits to."""
    digests = [hashlib.sha256(body).hexdigest() for _, body in sealed_chunks(fh, key, message_id)]
    return ChunkList(key.size, key.chunk_size, tuple(digests)).validate()
