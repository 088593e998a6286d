"""Enrolling the unit's terminal (`docex agent enroll`): the keys are made here, encrypted
with the unit's own passphrase, and never leave this machine; the hub receives only
certificate requests. The information centre approves the request whose fingerprint the
unit reads out to it; the terminal then fetches its certificates and writes its home.

Everything the hub answers is checked before it is used: the certificates must be for our
address, carry our public keys and chain to the CA sent with them (and, given
--ca-fingerprint, that CA must be the one the information centre announced); the directory
must be signed by the hub under that CA.

The hub's API speaks plain HTTP only on localhost, and so does the terminal: any other hub
is reached over HTTPS, its server certificate verified against the CA file given with
--hub-ca (pinned, with --ca-fingerprint, to the CA the information centre announced)."""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from docex.agent.config import CONFIG_NAME, AgentKeys, SealConfig, write_home
from docex.pki.keys import (
    generate_rsa_key,
    load_certificates,
    load_private_key,
    save_certificate,
    save_private_key,
)
from docex.pki.names import CertRole, address_of
from docex.pki.requests import key_fingerprint, make_request, same_fingerprint
from docex.pki.trust import TrustStore
from docex.pki.tsa import is_loopback
from docex.protocols.address import check_address
from docex.protocols.directory import verify_directory
from docex.protocols.errors import DocexError

STATE_FILE = "enroll.json"
KEY_NAMES = ("sign", "enc", "client")  # seal/signing, encryption, TLS login to the broker
DEFAULT_PORT = 8470
TIMEOUT = 20.0
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


@dataclass
class Enrollment:
    """What the terminal remembers between `enroll` calls (AGENTDIR/enroll.json)."""

    id: str
    address: str
    hub_url: str
    fingerprint: str
    hub_ca: str = ""  # a CA file to verify the hub's HTTPS certificate with
    ca_fingerprint: str = ""  # SHA-256 of the hub's CA as the information centre announced it
    passphrase_env: str = "DOCEX_PASSPHRASE"
    passphrase_file: str = ""
    insecure_no_passphrase: bool = False
    state: str = "pending"


def hub_url(value: str) -> str:
    """`HOST[:PORT]` (the hub's API, port 8470) or a full http(s) URL: HTTPS unless the hub
    is on this machine. A plain-HTTP URL of another machine is refused (`tls_required`):
    the unit's certificate requests and its certificates would cross the network in clear."""
    value = value.strip().rstrip("/")
    if "://" not in value:
        if ":" not in value:
            value = f"{value}:{DEFAULT_PORT}"
        value = f"{'http' if is_loopback(urlsplit(f'//{value}').hostname or '') else 'https'}://{value}"
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DocexError("hub_unreachable", f"{value} is not the hub's API (HOST[:PORT] or an https:// URL)")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise DocexError("tls_required", f"the hub's API is plain HTTP only on its own machine: use https://{parts.netloc}")
    return value


def check_pin(hub_ca: str, ca_fingerprint: str) -> None:
    """The CA file the hub's HTTPS certificate is verified with must be the CA whose
    fingerprint the information centre announced (when one was given)."""
    if not (hub_ca and ca_fingerprint):
        return
    try:
        certs = load_certificates(hub_ca)
    except (OSError, ValueError):
        raise DocexError("certificate_unreadable", f"cannot read the hub's CA from {hub_ca}") from None
    if not any(same_fingerprint(ca_fingerprint, c.fingerprint(hashes.SHA256()).hex()) for c in certs):
        raise DocexError("certificate_untrusted",
                         f"{hub_ca} is not the CA the information centre announced (fingerprint {ca_fingerprint})")


def _call(url: str, *, data: dict[str, Any] | None = None, hub_ca: str = "") -> dict[str, Any]:
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json", "Accept": "application/json"})
    context = ssl.create_default_context(cafile=hub_ca or None) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT, context=context) as resp:  # noqa: S310 - http(s) only
            answer = json.loads(resp.read(1024 * 1024))
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read(64 * 1024)).get("detail")
        except ValueError:
            detail = None
        if isinstance(detail, dict) and isinstance(detail.get("code"), str):
            raise DocexError(detail["code"], str(detail.get("message", ""))) from None
        raise DocexError("hub_unreachable", f"the hub answered {exc.code} at {url}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, ssl.SSLCertVerificationError):  # not the hub, or not the CA we were given
            raise DocexError("certificate_untrusted", f"the hub's HTTPS certificate at {url} does not verify with "
                             f"{hub_ca or 'the system CAs (give the hub CA with --hub-ca)'}: "
                             f"{reason.verify_message or reason}") from None
        raise DocexError("hub_unreachable", f"cannot reach the hub at {url}: {exc}") from None
    if not isinstance(answer, dict):
        raise DocexError("hub_unreachable", f"unexpected answer from {url}")
    return answer


def _state_path(home: Path) -> Path:
    return home / STATE_FILE


def load_state(home: str | Path) -> Enrollment | None:
    path = _state_path(Path(home))
    if not path.exists():
        return None
    return Enrollment(**json.loads(path.read_text("utf-8")))


def _save_state(home: Path, state: Enrollment) -> None:
    path = _state_path(home)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), ensure_ascii=False, indent=1), "utf-8")
    tmp.replace(path)


def begin(home: str | Path, address: str, hub: str, passphrase: bytes | None, keys: AgentKeys, *,
          hub_ca: str = "", ca_fingerprint: str = "") -> Enrollment:
    """Make the unit's key pairs here and send their certificate requests. The hub's URL and
    CA (against the announced fingerprint) are checked before any key is made."""
    root = Path(home).resolve()
    check_address(address)
    url = hub_url(hub)
    hub_ca = str(Path(hub_ca).resolve()) if hub_ca else ""  # `complete` may run from another folder
    check_pin(hub_ca, ca_fingerprint)
    if (root / CONFIG_NAME).exists():
        raise DocexError("credentials_exist", f"{root} is an approved terminal already; enrol a new one in an empty folder")
    if any((root / f"{name}.key").exists() for name in KEY_NAMES):
        raise DocexError("credentials_exist", f"{root} holds keys already; enrol in an empty folder")
    if passphrase is None and not keys.insecure_no_passphrase:
        raise DocexError("no_passphrase", "the unit's keys need a passphrase")
    root.mkdir(parents=True, exist_ok=True)
    made = {name: generate_rsa_key(2048) for name in KEY_NAMES}
    for name, key in made.items():
        save_private_key(root / f"{name}.key", key, passphrase)
    body = {"address": address, **{f"{name}_csr": make_request(key, address).decode() for name, key in made.items()}}
    try:
        answer = _call(f"{url}/api/enroll", data=body, hub_ca=hub_ca)
    except DocexError:
        for name in KEY_NAMES:  # nothing to wait for: the folder is left as it was, to try again
            (root / f"{name}.key").unlink(missing_ok=True)
        raise
    ours = key_fingerprint(*(key.public_key() for key in made.values()))
    if not same_fingerprint(str(answer.get("fingerprint", "")), ours) or not isinstance(answer.get("id"), str):
        raise DocexError("fingerprint_mismatch", "the hub acknowledged a request that is not ours")
    state = Enrollment(id=answer["id"], address=address, hub_url=url, fingerprint=ours, hub_ca=hub_ca,
                       ca_fingerprint=ca_fingerprint,
                       passphrase_env=keys.passphrase_env, passphrase_file=keys.passphrase_file,
                       insecure_no_passphrase=keys.insecure_no_passphrase)
    _save_state(root, state)
    return state


def _certificate(pem: Any, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(str(pem).encode())
    except ValueError:
        raise DocexError("certificate_unreadable", f"the hub sent an unreadable {what}") from None


def complete(home: str | Path, passphrase: bytes | None, *, ca_fingerprint: str = "") -> Enrollment:
    """Ask the hub once; when approved, check what it sent and write the agent home."""
    root = Path(home).resolve()
    state = load_state(root)
    if state is None:
        raise DocexError("unknown_request", f"{root} has no certificate request: run `docex agent enroll` with --address and --hub")
    if state.state == "approved":
        return state
    ca_fingerprint = ca_fingerprint or state.ca_fingerprint
    check_pin(state.hub_ca, ca_fingerprint)
    answer = _call(f"{hub_url(state.hub_url)}/api/enroll/{state.id}", hub_ca=state.hub_ca)
    if answer.get("state") == "superseded":
        raise DocexError("request_closed", "this request was superseded; enrol again in an empty folder")
    if answer.get("state") != "approved":
        return state
    sign_key = load_private_key(root / "sign.key", passphrase)
    enc_key = load_private_key(root / "enc.key", passphrase)
    ca = _certificate(answer.get("ca_crt"), "CA certificate")
    if ca_fingerprint and not same_fingerprint(ca_fingerprint, ca.fingerprint(hashes.SHA256()).hex()):
        raise DocexError("certificate_untrusted", "the hub's CA is not the one the information centre announced")
    anchor = TrustStore([ca])
    sign_cert = _certificate(answer.get("sign_crt"), "signing certificate")
    enc_cert = _certificate(answer.get("enc_crt"), "encryption certificate")
    checks = [(sign_cert, sign_key, CertRole.SEAL), (enc_cert, enc_key, CertRole.ENCRYPTION)]
    client_cert = None
    if answer.get("client_crt"):  # the broker has TLS: we log in with this certificate
        client_cert = _certificate(answer["client_crt"], "TLS login certificate")
        checks.append((client_cert, load_private_key(root / "client.key", passphrase), CertRole.CLIENT))
    for cert, key, role in checks:
        anchor.verify(cert, role=role)
        if address_of(cert) != state.address or cert.public_key() != key.public_key():
            raise DocexError("wrong_certificate_role", f"the hub sent a {role.value} certificate that is not ours")
    try:
        directory = base64.b64decode(str(answer.get("directory", "")), validate=True)
    except ValueError:
        raise DocexError("directory_untrusted", "the hub sent an unreadable directory") from None
    hub_prefix = str(answer.get("hub_prefix", ""))
    if verify_directory(directory, anchor, expected_prefix=hub_prefix).prefix != hub_prefix:
        raise DocexError("directory_untrusted", "the directory is not the hub's")
    password = ""
    if answer.get("broker_password"):
        assert isinstance(enc_key, rsa.RSAPrivateKey)
        try:
            password = enc_key.decrypt(base64.b64decode(str(answer["broker_password"])), OAEP).decode()
        except ValueError:
            raise DocexError("decryption_failed", "the broker login the hub sent cannot be decrypted") from None
    if client_cert is not None:
        save_certificate(root / "client.crt", client_cert)
    _write(root, state, answer, sign_cert, enc_cert, directory, _with_password(str(answer.get("broker_url", "")), password))
    return state


def _with_password(url: str, password: str) -> str:
    """The broker URL the hub sent (without the password), with the password we decrypted."""
    if not password:
        return url
    parts = urlsplit(url)
    netloc = f"{parts.username}:{quote(password, safe='')}@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _write(root: Path, state: Enrollment, answer: dict[str, Any], sign_cert: x509.Certificate,
           enc_cert: x509.Certificate, directory: bytes, broker_url: str) -> None:
    save_certificate(root / "sign.crt", sign_cert)
    save_certificate(root / "enc.crt", enc_cert)
    write_home(root, address=state.address, name=str(answer.get("name", state.address)),
               hub_prefix=str(answer.get("hub_prefix", "")), broker_url=broker_url,
               ca_pem=str(answer["ca_crt"]).encode(), anchors_pem=[], crl_pem=str(answer.get("crl", "")).encode(),
               directory_der=directory,
               keys=AgentKeys(passphrase_env=state.passphrase_env, passphrase_file=state.passphrase_file,
                              insecure_no_passphrase=state.insecure_no_passphrase),
               seal=SealConfig(tsa_url=str(answer.get("tsa_url", ""))),
               broker_ca_pem=str(answer.get("broker_ca", "")).encode())
    state.state = "approved"
    _save_state(root, state)
    os.chmod(root / CONFIG_NAME, 0o600)
