"""Approved terminals: a unit's terminal makes its own keys and sends certificate requests
(`docex agent enroll`); the information centre lists them (`docex unit requests`) and,
after comparing the fingerprint the unit reads out, approves one (`docex unit approve`).
Private keys never leave the terminal. One approved terminal per unit: approving another
one for a unit that has one replaces it (the old certificates are revoked, its access
ends) and is audited.

Requests live as small JSON files in HUBDIR/enrollment/ (named by a random id that only
the requesting terminal knows), written by the hub's API and by the approving command."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from docex.hub import units as hub_units
from docex.hub.config import HubConfig
from docex.hub.db import Database
from docex.hub.identity import HubIdentity
from docex.hub.models import Unit
from docex.pki.ca import CertificateAuthority
from docex.pki.errors import PkiError
from docex.pki.requests import key_fingerprint, request_key, same_fingerprint
from docex.protocols.address import check_address, is_under
from docex.protocols.durable import write_durably
from docex.protocols.errors import DocexError

REQUEST_ID = re.compile(r"[0-9a-f]{32}")
MAX_BODY_BYTES = 32 * 1024
MAX_PENDING = 500  # requests waiting at once, whole hub
MAX_PENDING_PER_ADDRESS = 3  # a newer request for an address supersedes the oldest
PENDING, APPROVED, SUPERSEDED = "pending", "approved", "superseded"
CSR_FIELDS = ("address", "sign_csr", "enc_csr", "client_csr")


@dataclass
class Request:
    id: str
    address: str
    sign_csr: str
    enc_csr: str
    client_csr: str
    fingerprint: str
    submitted_at: str
    peer: str = ""
    state: str = PENDING
    decided_at: str = ""
    decided_by: str = ""
    result: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """What `docex unit requests` shows."""
        return {"id": self.id, "address": self.address, "fingerprint": self.fingerprint,
                "submitted_at": self.submitted_at, "peer": self.peer, "state": self.state}


def _folder(config: HubConfig) -> Path:
    folder = config.home / "enrollment"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def _path(config: HubConfig, request_id: str) -> Path:
    if not REQUEST_ID.fullmatch(request_id):
        raise DocexError("unknown_request", "no such certificate request")
    return _folder(config) / f"{request_id}.json"


def _save(config: HubConfig, request: Request) -> None:
    # Durable before the requester is told its request id: an approval must find it.
    write_durably(_path(config, request.id), json.dumps(asdict(request), ensure_ascii=False).encode("utf-8"))


def load(config: HubConfig, request_id: str) -> Request:
    path = _path(config, request_id)
    try:
        return Request(**json.loads(path.read_text("utf-8")))
    except FileNotFoundError:
        raise DocexError("unknown_request", "no such certificate request") from None


def all_requests(config: HubConfig) -> list[Request]:
    out = []
    for path in _folder(config).glob("*.json"):
        try:
            out.append(Request(**json.loads(path.read_text("utf-8"))))
        except (ValueError, TypeError):
            continue
    return sorted(out, key=lambda r: r.submitted_at)


def pending(config: HubConfig) -> list[Request]:
    return [r for r in all_requests(config) if r.state == PENDING]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


# -- the terminal's side, through the hub's API ------------------------------------------------
def submit(config: HubConfig, data: Any, *, peer: str = "") -> Request:
    """A terminal's certificate requests: {"address", "sign_csr", "enc_csr", "client_csr"}
    (PEM: seal/signing, encryption, TLS login). Checked here, before anything is kept; the
    subject of a request is never used."""
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in CSR_FIELDS):
        raise DocexError("bad_request", "expected address, sign_csr, enc_csr and client_csr")
    address = data["address"]
    _check_address(address)
    if not is_under(address, config.prefix) or address == config.prefix:
        raise DocexError("bad_address", f"{address} is not under this hub's prefix {config.prefix}")
    keys = [request_key(data[k]) for k in CSR_FIELDS[1:]]
    if len({k.public_numbers().n for k in keys}) != len(keys):
        raise DocexError("bad_request", "the signing, encryption and login keys must all differ")
    waiting = pending(config)
    if len(waiting) >= MAX_PENDING:
        raise DocexError("rate_limited", "too many certificate requests are waiting for approval")
    mine = [r for r in waiting if r.address == address]
    for old in mine[: max(0, len(mine) - MAX_PENDING_PER_ADDRESS + 1)]:
        old.state, old.decided_at, old.decided_by = SUPERSEDED, _now(), "newer request"
        _save(config, old)
    request = Request(id=secrets.token_hex(16), address=address, sign_csr=data["sign_csr"], enc_csr=data["enc_csr"],
                      client_csr=data["client_csr"], fingerprint=key_fingerprint(*keys), submitted_at=_now(),
                      peer=peer[:64])
    _save(config, request)
    return request


def _check_address(address: str) -> None:
    try:
        check_address(address)
    except PkiError as exc:
        raise DocexError("bad_address", f"{address[:80]!r} is not a valid unit address") from exc


def status(config: HubConfig, request_id: str) -> dict[str, Any]:
    """What the terminal polls: the state and, once approved, its certificates and the rest
    of its home (the broker password, while there is one, encrypted to its own key)."""
    request = load(config, request_id)
    out: dict[str, Any] = {"id": request.id, "address": request.address, "state": request.state,
                           "fingerprint": request.fingerprint}
    if request.state == APPROVED:
        out.update(request.result)
    return out


class RateLimit:
    """At most `limit` events per `seconds` per key (the client's address), in memory."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit, self.seconds = limit, seconds
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._events) > 10_000:  # forget the quiet ones rather than grow without end
                self._events = {k: v for k, v in self._events.items() if v and now - v[-1] < self.seconds}
            events = self._events.setdefault(key, deque())
            while events and now - events[0] > self.seconds:
                events.popleft()
            if len(events) >= self.limit:
                return False
            events.append(now)
            return True


# -- the information centre's side ---------------------------------------------------------------
def _strip_password(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.password is None:
        return url, ""
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc)), unquote(parts.password)


OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def approve(
    config: HubConfig,
    db: Database,
    identity: HubIdentity,
    ca: CertificateAuthority,
    address: str,
    fingerprint: str,
    *,
    name: str = "",
    kind: str = "",
    building: str = "",
    phase: str = "electronic",
    actor: str = "information-centre",
) -> tuple[Request, bool]:
    """Issue the certificates of the pending request of `address` whose fingerprint is the
    one the unit read out. A new unit is registered (it needs its name); a unit that has a
    terminal gets this one instead. Returns (the request, whether a terminal was replaced)."""
    _check_address(address)
    candidates = [r for r in pending(config) if r.address == address]
    if not candidates:
        raise DocexError("unknown_request", f"no pending certificate request for {address}")
    chosen = next((r for r in candidates if same_fingerprint(fingerprint, r.fingerprint)), None)
    if chosen is None:
        raise DocexError("fingerprint_mismatch",
                         f"no pending request of {address} has fingerprint {fingerprint}; ask the unit to read it again")
    sign_key, enc_key, client_key = (request_key(chosen.sign_csr), request_key(chosen.enc_csr),
                                     request_key(chosen.client_csr))
    with db.read() as s:
        unit = s.get(Unit, address)
        existing_name = unit.name if unit is not None else None
    details = {"request": chosen.id, "fingerprint": chosen.fingerprint, "enrolled": True}
    if existing_name is None:
        if not name:
            raise DocexError("bad_metadata", f"{address} is a new unit: give its name (--name)")
        if phase not in hub_units.PHASES:
            raise DocexError("bad_metadata", f"phase must be one of {', '.join(hub_units.PHASES)}")
        sign_cert, enc_cert = ca.certify_unit(address, name, sign_key, enc_key)
        prov = hub_units.register_unit(config, db, identity, ca, address=address, name=name, kind=kind,
                                       building=building, phase=phase, sign_cert=sign_cert, enc_cert=enc_cert,
                                       keys_dir=Path(), client_public=client_key, actor=actor, **details)
        replaced = False
    else:
        sign_cert, enc_cert = ca.certify_unit(address, existing_name, sign_key, enc_key)
        prov = hub_units.replace_terminal(config, db, identity, ca, address=address, sign_cert=sign_cert,
                                          enc_cert=enc_cert, client_public=client_key, actor=actor, **details)
        replaced = True
    url, password = _strip_password(prov.broker_url)
    pem = serialization.Encoding.PEM
    chosen.result = {
        "name": prov.name,
        "hub_prefix": prov.hub_prefix,
        "sign_crt": sign_cert.public_bytes(pem).decode(),
        "enc_crt": enc_cert.public_bytes(pem).decode(),
        "ca_crt": prov.ca_pem.decode(),
        "crl": prov.crl_pem.decode(),
        "directory": base64.b64encode(prov.directory_der).decode(),
        "broker_url": url,
        "broker_ca": prov.broker_ca_pem.decode(),
        "client_crt": prov.client_cert_pem.decode(),
        "broker_password": base64.b64encode(_encrypt(enc_key, password)).decode() if password else "",
        "tsa_url": prov.tsa_url,
    }
    chosen.state, chosen.decided_at, chosen.decided_by = APPROVED, _now(), actor
    _save(config, chosen)
    for other in candidates:
        if other.id != chosen.id:
            other.state, other.decided_at, other.decided_by = SUPERSEDED, _now(), f"request {chosen.id} approved"
            _save(config, other)
    return chosen, replaced


def _encrypt(key: rsa.RSAPublicKey, secret: str) -> bytes:
    return key.encrypt(secret.encode(), OAEP)
