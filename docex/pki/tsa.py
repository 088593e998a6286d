"""The information centre's RFC 3161 time-stamping authority (时间戳服务).

The county intranet has no public TSA, so the information centre runs its own, with a
certificate from the county CA (``CertificateAuthority.issue_tsa``: EKU timeStamping,
critical). Three ways to use it:

- in-process: ``TimeStampAuthority.load(dir).timestamper()`` is a pyHanko TimeStamper;
- over HTTP: ``serve(tsa, host, port)`` (``docex tsa run``) answers
  ``application/timestamp-query`` POSTs with ``application/timestamp-reply``;
- as a client: ``http_timestamper(url)`` is the TimeStamper agents use to reach it.

Tokens are SHA-256 RSA signatures carrying the ESS signing-certificate-v2 attribute
(RFC 5816), a random 127-bit serial, one-second accuracy and the docex TSA policy OID.
A malformed or unacceptable request gets a ``rejection`` response with the RFC 3161
failure bit, never an exception or a crash of the server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import ipaddress
import json
import logging
import os
import secrets
import ssl
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pyhanko.sign.timestamps import TimeStamper, TimestampRequestError
from pyhanko.sign.timestamps.requests_client import RequestsHTTPTimeStamper

from docex.pki.errors import PkiError
from docex.pki.keys import PrivateKey, load_certificate, load_private_key
from docex.pki.names import DOCEX_ARC, CertRole, role_of
from docex.pki.ratelimit import RateLimiter

log = logging.getLogger(__name__)

TSA_POLICY_OID = f"{DOCEX_ARC}.5.1"  # docex TSA policy: county intranet, 1 s accuracy
QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
MAX_REQUEST_BYTES = 16 * 1024  # a TimeStampReq is a few hundred bytes
# Per client address: sealing asks one stamp a PDF, a busy unit a few a second at most.
RATE_PER_CLIENT, BURST_PER_CLIENT = 20.0, 40
LEDGER_NAME = "issued.jsonl"  # one JSON line per token issued (TimeStampAuthority.load)
_DIGESTS = {"sha256": 32, "sha384": 48, "sha512": 64}  # SHA-1 and MD5 are refused


def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


_A = TypeVar("_A", bound=core.Asn1Value)


def _reloaded(value: _A) -> _A:
    """The same value loaded from its DER: it then moves into a parent as bytes."""
    return type(value).load(value.dump())  # type: ignore[no-any-return]


def _attr(name: str, value: Any) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": cms.CMSAttributeType(name), "values": (value,)})


class Rejection(Exception):
    """A request the TSA refuses, with its RFC 3161 PKIFailureInfo bit name."""

    def __init__(self, failure: str, text: str) -> None:
        super().__init__(f"{failure}: {text}")
        self.failure, self.text = failure, text

    def der(self) -> bytes:
        status = tsp.PKIStatusInfo(
            {
                "status": tsp.PKIStatus("rejection"),
                "status_string": [self.text],
                "fail_info": tsp.PKIFailureInfo({self.failure}),
            }
        )
        # TimeStampResp ::= SEQUENCE { status, timeStampToken OPTIONAL }; asn1crypto
        # wrongly requires the token, so a rejection is assembled by hand.
        return bytes(core.Sequence(contents=status.dump()).dump())


class _Response(core.Sequence):  # type: ignore[misc]
    """TimeStampResp with the token optional, as RFC 3161 has it (see Rejection.der)."""

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def response_status(der: bytes) -> tuple[str, set[str], str]:
    """(status, failure bits, text) of a DER TimeStampResp, rejections included."""
    status = _Response.load(der)["status"]
    texts = status["status_string"].native or []
    return str(status["status"].native), set(status["fail_info"].native or ()), "; ".join(texts)


class TimeStampAuthority:
    """Issues RFC 3161 time-stamp tokens. Thread-safe: signing keeps no state."""

    def __init__(
        self,
        cert: x509.Certificate,
        key: PrivateKey,
        chain: Sequence[x509.Certificate] = (),
        *,
        policy_oid: str = TSA_POLICY_OID,
        clock: Callable[[], dt.datetime] | None = None,
        ledger: str | os.PathLike[str] | None = None,
        sync_ledger: bool = True,
    ) -> None:
        if role_of(cert) is not CertRole.TSA:
            raise PkiError("wrong_certificate_role", "the TSA needs a certificate issued by issue_tsa")
        if not isinstance(key, rsa.RSAPrivateKey):
            raise PkiError("key_unreadable", "the TSA key must be RSA")
        self.cert = cert
        self._key = key
        self.chain = list(chain)
        self.policy_oid = policy_oid
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        # Every token issued is recorded (serial, time, imprint) before it leaves: the TSA's
        # answer to "did you issue this token?" years later. JSON lines, append-only.
        self.ledger = Path(ledger) if ledger is not None else None
        # fsync per token: right for the HTTP service; the hub's in-process stamping of
        # delivery evidence turns it off (an fsync on a busy disk can stall for minutes,
        # and every evidence it stamps is itself kept durably in the hub's database).
        self._sync_ledger = sync_ledger
        self._ledger_lock = threading.Lock()
        self._asn1_cert = _asn1_cert(cert)
        # DER kept apart: certificates are embedded freshly loaded (unparsed) in every
        # token, since asn1crypto re-checks a parsed structure on every dump (slow).
        self._embed_der = [c.public_bytes(serialization.Encoding.DER) for c in [cert, *self.chain]]
        self._ess_der = self._signing_certificate_v2().dump()
        self._issuer_der = self._asn1_cert.issuer.dump()
        self._subject_der = self._asn1_cert.subject.dump()

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], passphrase: bytes | None, **kwargs: Any
    ) -> TimeStampAuthority:
        """From a folder written by ``issue_tsa``: tsa.crt, tsa.key (and ca.crt); the
        ledger of issued tokens is ``issued.jsonl`` in the same folder."""
        root = Path(directory)
        if not (root / "tsa.crt").exists():
            raise PkiError("no_credentials", f"{root} holds no tsa.crt: issue one with issue_tsa")
        ca = [load_certificate(root / "ca.crt")] if (root / "ca.crt").exists() else []
        kwargs.setdefault("ledger", root / LEDGER_NAME)
        return cls(load_certificate(root / "tsa.crt"), load_private_key(root / "tsa.key", passphrase), ca, **kwargs)

    def _record(self, serial: int, when: dt.datetime, algorithm: str, digest: bytes) -> None:
        entry = {
            "serial": format(serial, "x"),
            "gen_time": when.isoformat(),
            "hash_algorithm": algorithm,
            "imprint": digest.hex(),
            "policy": self.policy_oid,
        }
        log.info("tsa: issued token serial %s at %s", entry["serial"], entry["gen_time"])
        if self.ledger is None:
            return
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        with self._ledger_lock:
            fd = os.open(self.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line)
                if self._sync_ledger:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def _signing_certificate_v2(self) -> tsp.SigningCertificateV2:
        der = self.cert.public_bytes(serialization.Encoding.DER)
        return tsp.SigningCertificateV2(
            {
                "certs": [
                    tsp.ESSCertIDv2(
                        {
                            "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                            "cert_hash": hashlib.sha256(der).digest(),
                            "issuer_serial": {
                                "issuer": [
                                    asn1_x509.GeneralName(
                                        name="directory_name", value=self._asn1_cert.issuer
                                    )
                                ],
                                "serial_number": self._asn1_cert.serial_number,
                            },
                        }
                    )
                ]
            }
        )

    # -- protocol ------------------------------------------------------------------------
    def respond(self, request_der: bytes) -> bytes:
        """A DER TimeStampResp for a DER TimeStampReq; bad requests get a rejection."""
        try:
            req = tsp.TimeStampReq.load(request_der)
            req.native  # noqa: B018 - parse everything now, not half-way through signing
            return bytes(self.timestamp(req).dump())
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # AttributeError: asn1crypto on some malformed structures (found by the fuzzer)
            log.info("tsa: malformed request (%s)", type(exc).__name__)
            return Rejection("bad_data_format", "malformed TimeStampReq").der()
        except Rejection as rejection:
            log.info("tsa: refused a request (%s)", rejection.failure)
            return rejection.der()

    def timestamp(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        """Answer one parsed request (RFC 3161 §2.4.2); raises :class:`Rejection`."""
        if req["version"].native != "v1":
            raise Rejection("bad_request", "only version 1 requests are supported")
        imprint = req["message_imprint"]
        algorithm = imprint["hash_algorithm"]["algorithm"].native
        if algorithm not in _DIGESTS:
            raise Rejection("bad_alg", f"digest algorithm {algorithm} is not accepted")
        if len(imprint["hashed_message"].native) != _DIGESTS[algorithm]:
            raise Rejection("bad_data_format", "digest length does not match its algorithm")
        policy = req["req_policy"].native
        if policy is not None and policy != self.policy_oid:
            raise Rejection("unaccepted_policy", f"this TSA only issues under policy {self.policy_oid}")
        if req["extensions"].native:
            raise Rejection("unaccepted_extension", "request extensions are not supported")

        gen_time = self._clock().astimezone(dt.UTC)
        info: dict[str, Any] = {
            "version": "v1",
            "policy": self.policy_oid,
            "message_imprint": imprint,
            "serial_number": int.from_bytes(secrets.token_bytes(16), "big") >> 1,
            "gen_time": core.GeneralizedTime(gen_time),
            "accuracy": tsp.Accuracy({"seconds": 1}),
            "tsa": asn1_x509.GeneralName(name="directory_name", value=asn1_x509.Name.load(self._subject_der)),
        }
        if req["nonce"].native is not None:
            info["nonce"] = req["nonce"]
        tst_info = tsp.TSTInfo(info)
        token = self._sign(tst_info.dump(), gen_time, include_certs=bool(req["cert_req"].native))
        self._record(info["serial_number"], gen_time, algorithm, imprint["hashed_message"].native)
        return tsp.TimeStampResp(
            {"status": tsp.PKIStatusInfo({"status": tsp.PKIStatus("granted")}), "time_stamp_token": token}
        )

    def _sign(self, tst_info_der: bytes, when: dt.datetime, *, include_certs: bool) -> cms.ContentInfo:
        # What is the same in every token is loaded from DER made once (see _fixed): asn1crypto
        # re-encodes a structure built from Python values whenever a parent holds it, and that,
        # not the RSA signature, was most of a token's time.
        fixed = self._fixed
        signed_attrs = _reloaded(cms.CMSAttributes(
            [
                cms.CMSAttribute.load(fixed["content_type"]),
                _attr("signing_time", cms.Time({"utc_time": core.UTCTime(when)})),
                _attr("message_digest", hashlib.sha256(tst_info_der).digest()),
                cms.CMSAttribute.load(fixed["signing_certificate"]),
                cms.CMSAttribute.load(fixed["algorithm_protection"]),  # RFC 6211
            ]
        ))
        signature = self._key.sign(signed_attrs.dump(), padding.PKCS1v15(), hashes.SHA256())
        signer_info = _reloaded(cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier.load(fixed["sid"]),
                "digest_algorithm": algos.DigestAlgorithm.load(fixed["digest_algorithm"]),
                "signed_attrs": signed_attrs,
                "signature_algorithm": algos.SignedDigestAlgorithm.load(fixed["signature_algorithm"]),
                "signature": signature,
            }
        ))
        signed_data: dict[str, Any] = {
            "version": "v3",
            "digest_algorithms": cms.DigestAlgorithms.load(fixed["digest_algorithms"]),
            "encap_content_info": {
                "content_type": "tst_info",
                "content": cms.ParsableOctetString(tst_info_der),
            },
            "signer_infos": cms.SignerInfos([signer_info]),
        }
        if include_certs:
            signed_data["certificates"] = cms.CertificateSet.load(fixed["certificates"])
        return cms.ContentInfo({"content_type": "signed_data", "content": _reloaded(cms.SignedData(signed_data))})

    @functools.cached_property
    def _fixed(self) -> dict[str, bytes]:
        """DER of the parts every token repeats."""
        digest_alg = algos.DigestAlgorithm({"algorithm": "sha256"})
        return {
            "content_type": _attr("content_type", cms.ContentType("tst_info")).dump(),
            "signing_certificate": _attr("signing_certificate_v2", tsp.SigningCertificateV2.load(self._ess_der)).dump(),
            "algorithm_protection": _attr(
                "cms_algorithm_protection",
                cms.CMSAlgorithmProtection(
                    {
                        "digest_algorithm": {"algorithm": "sha256"},
                        "signature_algorithm": {"algorithm": "sha256_rsa"},
                    }
                ),
            ).dump(),
            "sid": cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value=cms.IssuerAndSerialNumber(
                    {
                        "issuer": asn1_x509.Name.load(self._issuer_der),
                        "serial_number": self.cert.serial_number,
                    }
                ),
            ).dump(),
            "digest_algorithm": digest_alg.dump(),
            "digest_algorithms": cms.DigestAlgorithms([digest_alg]).dump(),
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"}).dump(),
            "certificates": cms.CertificateSet(
                [asn1_x509.Certificate.load(der) for der in self._embed_der]
            ).dump(),
        }

    def timestamper(self) -> TimeStamper:
        """A pyHanko TimeStamper that asks this TSA in-process (no network)."""
        return LocalTimeStamper(self)


class LocalTimeStamper(TimeStamper):
    """pyHanko's view of an in-process :class:`TimeStampAuthority`."""

    def __init__(self, tsa: TimeStampAuthority) -> None:
        super().__init__(include_nonce=True)  # type: ignore[no-untyped-call]
        self.tsa = tsa

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        try:
            return self.tsa.timestamp(req)
        except Rejection as rejection:
            raise TimestampRequestError(f"TSA refused the request: {rejection}") from None


class HttpTimeStamper(RequestsHTTPTimeStamper):
    """pyHanko's HTTP client, plus a clear error when the TSA answers with a rejection
    (asn1crypto cannot parse a TimeStampResp without a token by itself), and HTTPS checked
    against the information centre's CA (`ca_file`) rather than the system's."""

    ca_file: str | None = None

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        if self.ca_file and str(self.url).startswith("https:"):
            resp = await asyncio.to_thread(self._post_verified, req)
        else:
            resp = await super().async_request_tsa_response(req)
        status, failures, text = response_status(resp.dump())
        if status not in ("granted", "granted_with_mods"):
            raise TimestampRequestError(f"TSA refused the request: {status} {sorted(failures)} {text}")
        return resp


    def _post_verified(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        import requests

        try:
            raw = requests.post(self.url, req.dump(), headers=self.request_headers(), timeout=self.timeout,
                                verify=self.ca_file)
        except OSError as exc:
            raise TimestampRequestError("Error in communication with timestamp server") from exc
        if raw.headers.get("Content-Type") != "application/timestamp-reply":
            raise TimestampRequestError("Timestamp server response is malformed.")
        return tsp.TimeStampResp.load(raw.content)


def http_timestamper(url: str, *, timeout: float = 10.0, ca_file: str | None = None) -> TimeStamper:
    """The client side for agents: RFC 3161 over HTTP(S) to ``docex tsa run`` or the hub's
    ``/tsa``; with `ca_file`, an https:// server must hold a certificate of that CA."""
    stamper = HttpTimeStamper(url, timeout=timeout)  # type: ignore[no-untyped-call]
    stamper.ca_file = ca_file
    return stamper


# -- HTTP server ---------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    server: TsaHttpServer
    protocol_version = "HTTP/1.1"

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") in ("", "/health"):
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def do_POST(self) -> None:  # noqa: N802
        client = str(self.client_address[0])
        if not self.server.limiter.allow(client):
            self.close_connection = True
            self.send_response(429)
            self.send_header("Retry-After", str(self.server.limiter.retry_after(client)))
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            body = b"too many requests: rate_limited\n"
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send(411, b"Content-Length required\n", "text/plain; charset=utf-8")
            return
        if length > MAX_REQUEST_BYTES or length < 0:
            self.close_connection = True
            self._send(413, b"request too large\n", "text/plain; charset=utf-8")
            return
        body = self.rfile.read(length)
        if ctype != QUERY_TYPE:
            self._send(415, f"expected {QUERY_TYPE}\n".encode(), "text/plain; charset=utf-8")
            return
        try:
            reply = self.server.tsa.respond(body)
        except Exception:  # a bug must cost one request, not the service
            log.exception("tsa: failed to answer a request")
            self._send(500, b"internal error\n", "text/plain; charset=utf-8")
            return
        self._send(200, reply, REPLY_TYPE)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("tsa http: " + format, *args)


class TsaHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], tsa: TimeStampAuthority, limiter: RateLimiter | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(address, _Handler)
        self.tsa = tsa
        self.limiter = limiter or RateLimiter(RATE_PER_CLIENT, BURST_PER_CLIENT)
        self.tls = ssl_context is not None
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}/"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def server_tls_context(certfile: str, keyfile: str, password: bytes | None = None) -> ssl.SSLContext:
    """TLS 1.2+ for a docex HTTP service with a server certificate from the hub's CA."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile, keyfile, password=password)
    return ctx


def serve(tsa: TimeStampAuthority, host: str = "127.0.0.1", port: int = 3161,
          ssl_context: ssl.SSLContext | None = None, *, limiter: RateLimiter | None = None) -> TsaHttpServer:
    """A started HTTP(S) TSA (background thread); ``port=0`` picks a free port. Call
    ``shutdown()`` and ``server_close()`` to stop it. Plain HTTP only on a loopback address.
    Each client address gets RATE_PER_CLIENT stamps a second (BURST_PER_CLIENT at once);
    beyond, 429."""
    if ssl_context is None and not is_loopback(host):
        raise PkiError("tls_required", f"the TSA serves plain HTTP only on localhost; give a TLS certificate to listen on {host}")
    server = TsaHttpServer((host, port), tsa, limiter, ssl_context)
    threading.Thread(target=server.serve_forever, name="docex-tsa", daemon=True).start()
    return server

