"""Who is at the desk: registered staff (个人数字证书) and API tokens for office systems.

Staff: `docex agent add-person` copies a person folder (person.crt and its encrypted
person.key) into AGENTDIR/persons/<serial>/. Logging in proves possession of the key: the
passphrase must decrypt it, the certificate must chain to a trusted CA, be unrevoked, be a
personal certificate of this unit, and the decrypted key must sign a fresh challenge that
the certificate verifies. The session then holds the person's key in memory only, so what
they do (签收, 退回, 撤销) is signed with their own certificate.

Tokens: `docex agent token` prints a random token once; only its SHA-256 is kept
(AGENTDIR/desk/tokens.json). A token acts for the unit (its seal signs), recorded by label.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from docex.agent.context import AgentContext
from docex.pki.credentials import PersonCredentials
from docex.pki.errors import PkiError
from docex.pki.keys import PrivateKey, load_certificate
from docex.pki.names import CertRole, address_of, common_name
from docex.protocols.errors import DocexError

MAX_FAILURES = 5  # wrong passphrases in a row before the person is locked out for a while
LOCK_SECONDS = 60.0


def persons_dir(home: Path) -> Path:
    return home / "persons"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def add_person(ctx: AgentContext, person_dir: str | os.PathLike[str]) -> tuple[str, str]:
    """Register a staff member's certificate folder with the agent. Returns (id, name)."""
    src = Path(person_dir)
    for name in ("person.crt", "person.key"):
        if not (src / name).is_file():
            raise DocexError("no_credentials", f"{src} lacks {name}: is it a folder from `docex pki issue-person`?")
    cert = load_certificate(src / "person.crt")
    ctx.trust.verify(cert, role=CertRole.PERSON)
    if address_of(cert) != ctx.creds.address:
        raise DocexError("sender_mismatch", f"{common_name(cert)} works for {address_of(cert)}, not {ctx.creds.address}")
    key = (src / "person.key").read_bytes()
    if b"ENCRYPTED PRIVATE KEY" not in key:
        raise DocexError("key_unreadable", "the personal key is not protected by a passphrase; issue it with one")
    ident = f"{cert.serial_number:x}"
    target = persons_dir(ctx.config.home) / ident
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "person.crt", target / "person.crt")
    _write_private(target / "person.key", key)
    return ident, common_name(cert)


@dataclass(frozen=True)
class Person:
    id: str
    name: str


def list_persons(home: Path) -> list[Person]:
    out = []
    folder = persons_dir(home)
    for sub in sorted(folder.iterdir()) if folder.exists() else []:
        crt = sub / "person.crt"
        if crt.is_file():
            try:
                out.append(Person(sub.name, common_name(load_certificate(crt))))
            except PkiError:
                continue
    return sorted(out, key=lambda p: p.name)


def _prove(key: PrivateKey, cert_public: object) -> bool:
    """Sign a fresh challenge with the private key; the certificate's key must verify it."""
    challenge = secrets.token_bytes(32)
    try:
        if isinstance(key, rsa.RSAPrivateKey) and isinstance(cert_public, rsa.RSAPublicKey):
            sig = key.sign(challenge, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH), hashes.SHA256())
            cert_public.verify(sig, challenge, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH),
                               hashes.SHA256())
            return True
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(cert_public, ec.EllipticCurvePublicKey):
            sig = key.sign(challenge, ec.ECDSA(hashes.SHA256()))
            cert_public.verify(sig, challenge, ec.ECDSA(hashes.SHA256()))
            return True
    except InvalidSignature:
        return False
    return False


@dataclass
class Session:
    token: str
    csrf: str
    staff: PersonCredentials | None  # None: an API token acting for the unit
    actor: str
    serial: str
    expires: float
    via: str = "session"  # session | token


@dataclass
class Gate:
    """Logins, sessions and tokens of one agent's desk. Thread-safe."""

    ctx: AgentContext
    session_seconds: float = 10 * 3600
    _sessions: dict[str, Session] = field(default_factory=dict)
    _failures: dict[str, tuple[int, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def login(self, person_id: str, passphrase: str) -> Session:
        folder = persons_dir(self.ctx.config.home)
        known = {p.id for p in list_persons(self.ctx.config.home)}
        if person_id not in known:  # never a path from the request: only registered ids
            raise DocexError("login_failed", "no such registered person")
        with self._lock:
            count, until = self._failures.get(person_id, (0, 0.0))
            if count >= MAX_FAILURES and time.monotonic() < until:
                raise DocexError("login_failed", "too many wrong passphrases; wait a minute")
        try:
            staff = PersonCredentials.load(folder / person_id, passphrase.encode("utf-8"))
            self.ctx.trust.verify(staff.cert, role=CertRole.PERSON)
            if staff.address != self.ctx.creds.address:
                raise DocexError("login_failed", f"{staff.name} works for {staff.address}")
            if not _prove(staff.key, staff.cert.public_key()):
                raise DocexError("login_failed", "the key does not match the certificate")
        except PkiError as exc:
            with self._lock:
                count, _ = self._failures.get(person_id, (0, 0.0))
                self._failures[person_id] = (count + 1, time.monotonic() + LOCK_SECONDS)
            if exc.code in ("certificate_revoked", "certificate_expired", "certificate_untrusted", "login_failed"):
                raise DocexError("login_failed", exc.message) from exc
            raise DocexError("login_failed", "wrong certificate or passphrase") from exc
        with self._lock:
            self._failures.pop(person_id, None)
            session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), staff, staff.name,
                              f"{staff.cert.serial_number:x}", time.monotonic() + self.session_seconds)
            self._sessions[session.token] = session
        return session

    def logout(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(token, None)

    def session(self, token: str) -> Session | None:
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                return None
            if time.monotonic() > session.expires:
                self._sessions.pop(token, None)
                return None
            return session

    def bearer(self, token: str) -> Session | None:
        label = check_token(self.ctx.config.home, token)
        if label is None:
            return None
        return Session("", "", None, f"token:{label}", "", time.monotonic() + 60, via="token")


# -- API tokens ------------------------------------------------------------------------------
def _tokens_path(home: Path) -> Path:
    return home / "desk" / "tokens.json"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", errors="replace")).hexdigest()


def new_token(home: Path, label: str) -> str:
    path = _tokens_path(home)
    path.parent.mkdir(exist_ok=True)
    tokens = json.loads(path.read_text("utf-8")) if path.exists() else []
    token = secrets.token_urlsafe(32)
    tokens.append({"label": label, "sha256": _digest(token), "created": dt.datetime.now(dt.UTC).isoformat()})
    _write_private(path, json.dumps(tokens, ensure_ascii=False, indent=1).encode())
    return token


def check_token(home: Path, token: str) -> str | None:
    path = _tokens_path(home)
    if not token or len(token) > 200 or not path.exists():
        return None
    digest = _digest(token)
    for entry in json.loads(path.read_text("utf-8")):
        if hmac.compare_digest(str(entry.get("sha256", "")), digest):
            return str(entry.get("label", "api"))
    return None
