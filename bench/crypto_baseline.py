"""Raw cost of the crypto every document must pay (``cryptography`` only, no docex code).

One process, one core: these are per-core ceilings. ``doc_crypto_10KB`` adds up the
mandatory operations of one 10 KB document to one recipient, receipt included, from the
rates measured just before, as the ceiling an envelope implementation can be compared to.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from functools import partial

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.harness import Result

KB10 = 10 * 1024
MB1 = 1024 * 1024

TITLE = "密码运算基线 raw crypto: cryptography, one core"

# What one 10 KB document to one recipient costs, receipt included (see DESIGN.md):
# signs: inner, outer, receipt; verifies: hub outer, recipient outer + inner, hub and
# sender the receipt; one key wrap and unwrap; the package encrypted and decrypted once;
# the file hashed by the sender (manifest) and the recipient (check).
DOC_OPS_10KB = {
    "rsa2048_sign": 3,
    "rsa2048_verify": 5,
    "rsa_oaep_encrypt": 1,
    "rsa_oaep_decrypt": 1,
    "aes256gcm_encrypt_10KB": 1,
    "aes256gcm_decrypt_10KB": 1,
    "sha256_10KB": 2,
}


def measure(name: str, fn: Callable[[], object], min_seconds: float, size: int = 0, *,
            clock: Callable[[], float] = time.perf_counter, unit: str = "ops/s") -> Result:
    """Call ``fn`` in growing batches until at least ``min_seconds`` of ``clock`` have passed
    (wall time by default; ``time.process_time`` for CPU time on a noisy machine)."""
    fn()  # warm caches and lazy initialisation outside the timing
    count, seconds, batch = 0, 0.0, 1
    while seconds < min_seconds:
        t0 = clock()
        for _ in range(batch):
            fn()
        seconds += clock() - t0
        count += batch
        batch *= 2
    extra: dict[str, object] = {}
    if size:
        extra["MB/s"] = count * size / seconds / 1e6
    return Result(name, count, seconds, unit, extra)


def measure_all(min_seconds: float = 0.5) -> list[Result]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key()
    pkcs1v15 = padding.PKCS1v15()
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    # About the size of the signed attributes a CMS signature covers.
    signed_attrs = os.urandom(256)
    signature = key.sign(signed_attrs, pkcs1v15, hashes.SHA256())
    cek = os.urandom(32)
    wrapped = pub.encrypt(cek, oaep)
    aes = AESGCM(AESGCM.generate_key(bit_length=256))
    nonce = os.urandom(12)
    data = {KB10: os.urandom(KB10), MB1: os.urandom(MB1)}
    sealed = {size: aes.encrypt(nonce, body, None) for size, body in data.items()}

    # Nonce reuse is harmless here: nothing is kept, and it keeps the loop pure AES cost.
    cases: list[tuple[str, Callable[[], object], int]] = [
        ("rsa2048_sign", lambda: key.sign(signed_attrs, pkcs1v15, hashes.SHA256()), 0),
        (
            "rsa2048_verify",
            lambda: pub.verify(signature, signed_attrs, pkcs1v15, hashes.SHA256()),
            0,
        ),
        ("rsa_oaep_encrypt", lambda: pub.encrypt(cek, oaep), 0),
        ("rsa_oaep_decrypt", lambda: key.decrypt(wrapped, oaep), 0),
    ]
    for size, label in ((KB10, "10KB"), (MB1, "1MB")):
        body, ct = data[size], sealed[size]
        cases += [
            (f"aes256gcm_encrypt_{label}", partial(aes.encrypt, nonce, body, None), size),
            (f"aes256gcm_decrypt_{label}", partial(aes.decrypt, nonce, ct, None), size),
            (f"sha256_{label}", partial(hashlib.sha256, body), size),
        ]
    return [measure(name, fn, min_seconds, size) for name, fn, size in cases]


def doc_crypto(results: list[Result], docs: int = 1000) -> Result:
    """The mandatory crypto of ``docs`` 10 KB documents, summed from measured op rates."""
    rates = {r.name: r.rate for r in results}
    per_doc = sum(n / rates[op] for op, n in DOC_OPS_10KB.items())
    return Result(
        "doc_crypto_10KB",
        docs,
        docs * per_doc,
        "docs/s",
        {"recipients": 1, "per_doc_ms": per_doc * 1000, "note": "sum of ops, 1 core"},
    )


def run(quick: bool) -> list[Result]:
    results = measure_all(0.1 if quick else 0.5)
    return [*results, doc_crypto(results)]
