"""The broker's side of TLS: a managed block in RabbitMQ's `rabbitmq.conf` (the TLS listener,
peer verification, SASL EXTERNAL with the certificate's CN as user name) and a folder next to
it (`docex-tls/`) with the broker's server certificate and the CA bundle of every hub that
uses this broker. The bundle and the certificate are re-read by RabbitMQ after its PEM cache
is cleared; only a changed listener block needs a restart."""

from __future__ import annotations

import fcntl
import hashlib
import os
import pwd
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from docex.broker.errors import BrokerError

TLS_DIR_NAME = "docex-tls"
BEGIN = "# BEGIN docex tls (written by `docex broker tls`: change it there, not here)"
END = "# END docex tls"
ADVANCED_MARK = "%% written by `docex broker tls`: change it there, not here"
_BLOCK_RE = re.compile(r"\n?# BEGIN docex tls[^\n]*\n.*?# END docex tls\n?", re.S)
_LISTEN_RE = re.compile(r"^(?:(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):)?(\d{1,5})$")


def ca_fingerprint(pem: bytes) -> str:
    """A short stable name for a CA certificate file in the bundle folder."""
    body = b"".join(line.strip() for line in pem.splitlines() if line and not line.startswith(b"-----"))
    return hashlib.sha256(body).hexdigest()[:16]


@dataclass(frozen=True)
class BrokerNode:
    """One RabbitMQ node as `docex broker tls` configures it: the system broker by default,
    or a private node (its own config file and node name) for tests and trials."""

    config_file: Path = Path("/etc/rabbitmq/rabbitmq.conf")
    node: str = ""  # rabbitmqctl -n NODE; "" is the default node of this machine
    listen: str = "5671"  # listeners.ssl.default: PORT (every interface) or IP:PORT
    # TLS options (CRL checking needs Erlang terms): advanced.config beside rabbitmq.conf,
    # which a private node must name in RABBITMQ_ADVANCED_CONFIG_FILE.
    advanced_file: Path | None = None

    def __post_init__(self) -> None:
        if not _LISTEN_RE.match(self.listen):
            raise BrokerError(f"--listen must be PORT or IP:PORT, not {self.listen!r}")

    @property
    def port(self) -> int:
        match = _LISTEN_RE.match(self.listen)
        assert match is not None
        return int(match.group(2))

    @property
    def tls_dir(self) -> Path:
        return self.config_file.parent / TLS_DIR_NAME

    @property
    def advanced_config(self) -> Path:
        return self.advanced_file or self.config_file.parent / "advanced.config"

    @property
    def crl_dir(self) -> Path:
        """Each CA's CRL as `<issuer hash>.r0`, read by RabbitMQ at every handshake."""
        return self.tls_dir / "crls"

    @property
    def bundle(self) -> Path:
        return self.tls_dir / "ca-bundle.pem"

    @property
    def server_cert(self) -> Path:
        return self.tls_dir / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.tls_dir / "server.key"

    @property
    def server_issuer(self) -> Path:
        """The CA that issued the server certificate: what clients verify the broker with."""
        return self.tls_dir / "ca.crt"

    # -- rabbitmq.conf ------------------------------------------------------------------------
    def listener_block(self) -> str:
        lines = [
            BEGIN,
            f"listeners.ssl.default = {self.listen}",
            # Units and bridges: EXTERNAL (their certificate); PLAIN stays for the hub's own
            # localhost login and guest; units have no password, so PLAIN refuses them.
            "auth_mechanisms.1 = EXTERNAL",
            "auth_mechanisms.2 = PLAIN",
            "auth_mechanisms.3 = AMQPLAIN",
            # docex client certificates carry the broker user name as their CN (see README).
            "ssl_cert_login_from = common_name",
            END,
        ]
        return "\n".join(lines) + "\n"

    def advanced_terms(self) -> str:
        """The listener's TLS options: peer certificates required and checked against the
        bundle and each CA's CRL (the leaf's: `crl_check, peer`; a revoked unit's handshake fails)."""
        d = self.tls_dir
        return (
            f"{ADVANCED_MARK}\n"
            "[{rabbit, [{ssl_options, [\n"
            f"    {{cacertfile, \"{d / 'ca-bundle.pem'}\"}},\n"
            f"    {{certfile, \"{d / 'server.crt'}\"}},\n"
            f"    {{keyfile, \"{d / 'server.key'}\"}},\n"
            "    {verify, verify_peer}, {fail_if_no_peer_cert, true}, {depth, 2},\n"
            "    {versions, ['tlsv1.3', 'tlsv1.2']},\n"
            "    {crl_check, peer},\n"
            f"    {{crl_cache, {{ssl_crl_hash_dir, {{internal, [{{dir, \"{d / 'crls'}\"}}]}}}}}}\n"
            "]}]}].\n"
        )

    def write_listener(self) -> bool:
        """Put the block into rabbitmq.conf and the TLS options into advanced.config; True
        when either changed (the node reads them only at boot: a restart is due)."""
        path = self.config_file
        current = path.read_text("utf-8") if path.exists() else ""
        rest = _BLOCK_RE.sub("\n", current).rstrip("\n")
        wanted = (rest + "\n\n" if rest else "") + self.listener_block()
        changed = False
        if wanted != current:
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, wanted.encode(), 0o644)
            changed = True
        adv = self.advanced_config
        have = adv.read_text("utf-8") if adv.exists() else ""
        if have and not have.startswith(ADVANCED_MARK):
            raise BrokerError(f"{adv} exists and was not written by docex: merge the TLS options of "
                              "`docex broker tls` into it by hand, or move it away")
        if have != self.advanced_terms():
            _atomic_write(adv, self.advanced_terms().encode(), 0o644)
            changed = True
        return changed

    def listener_configured(self) -> bool:
        path, adv = self.config_file, self.advanced_config
        return (path.exists() and self.listener_block() in path.read_text("utf-8") and adv.exists()
                and adv.read_text("utf-8") == self.advanced_terms())

    @classmethod
    def installed(cls, config_file: Path = Path("/etc/rabbitmq/rabbitmq.conf"), node: str = "") -> BrokerNode | None:
        """The node as `docex broker tls` configured it (its listener), or None when it was not."""
        try:
            text = config_file.read_text("utf-8")
        except OSError:
            return None
        match = re.search(r"^listeners\.ssl\.default = (\S+)$", text, re.M)
        if match is None or BEGIN not in text:
            return None
        found = cls(config_file=config_file, node=node, listen=match.group(1))
        return found if found.listener_configured() else None

    def write_crls(self, crls: Mapping[str, bytes]) -> list[str]:
        """Make the CRL folder hold exactly `crls` (any key -> PEM); returns what changed.
        CAs with the same subject name share an issuer hash: their CRLs are `<hash>.r0`,
        `.r1`, ... without gaps (OpenSSL's convention, which Erlang's ssl_crl_hash_dir reads;
        each CRL's signature picks the right one). Read at each handshake: no cache to clear."""
        self.crl_dir.mkdir(parents=True, exist_ok=True)
        by_hash: dict[str, list[bytes]] = {}
        for pem in sorted(crls.values(), key=_crl_key):
            by_hash.setdefault(crl_hash(pem), []).append(pem)
        wanted = {f"{h}.r{i}": pem for h, pems in by_hash.items() for i, pem in enumerate(pems)}
        changed = []
        for name, pem in wanted.items():
            path = self.crl_dir / name
            if not path.exists() or path.read_bytes() != pem:
                _atomic_write(path, pem, 0o644)
                changed.append(name)
        for path in self.crl_dir.glob("*.r*"):
            if path.name not in wanted:
                path.unlink()
                changed.append(path.name)
        return changed

    # -- files --------------------------------------------------------------------------------
    def write_bundle(self, cas: Mapping[str, bytes]) -> tuple[list[str], list[str]]:
        """Make the bundle exactly `cas` (fingerprint -> PEM); returns (added, removed)."""
        folder = self.tls_dir / "cacerts"
        folder.mkdir(parents=True, exist_ok=True)
        have = {p.stem for p in folder.glob("*.pem")}
        added = sorted(set(cas) - have)
        removed = sorted(have - set(cas))
        for fp in added:
            _atomic_write(folder / f"{fp}.pem", cas[fp], 0o644)
        for fp in removed:
            (folder / f"{fp}.pem").unlink()
        bundle = b"".join(cas[fp].rstrip(b"\n") + b"\n" for fp in sorted(cas))
        if not self.bundle.exists() or self.bundle.read_bytes() != bundle:
            _atomic_write(self.bundle, bundle, 0o644)
        return added, removed


    def hand_to_broker(self) -> None:
        """The node runs as the `rabbitmq` user: it must read the folder (the key is 0600)."""
        try:
            owner = pwd.getpwnam("rabbitmq")
        except KeyError:
            return
        if os.geteuid() != 0:
            return
        for path in [self.tls_dir, *self.tls_dir.rglob("*")]:
            os.chown(path, owner.pw_uid, owner.pw_gid)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One `docex broker tls` at a time per broker (tests register their CAs concurrently)."""
        self.tls_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.tls_dir, 0o755)
        with open(self.tls_dir / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- the running node ---------------------------------------------------------------------
    def _ctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        cmd = [shutil.which("rabbitmqctl") or "rabbitmqctl", *(["-n", self.node] if self.node else []), *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BrokerError(f"rabbitmqctl failed: {type(exc).__name__}") from None

    def running(self) -> bool:
        """Whether this machine can reach the node with rabbitmqctl (a broker in another
        container cannot be: it re-reads the files when its PEM cache expires, ~2 minutes)."""
        if shutil.which("rabbitmqctl") is None:
            return False
        return self._ctl("eval", "ok.", timeout=30).returncode == 0

    def clear_pem_cache(self) -> None:
        """New TLS handshakes read the bundle and certificate files again."""
        done = self._ctl("eval", "ssl:clear_pem_cache().")
        if done.returncode != 0:
            raise BrokerError(f"could not clear the broker's PEM cache: {done.stderr.strip()[:200]}")

    def restart(self, *, timeout: float = 120.0) -> None:
        """Stop the node and start it again with the same environment (the listener block is
        read only at boot). Under systemd, systemctl does it."""
        if shutil.which("systemctl") and not self.node and _systemd_active():
            subprocess.run(["systemctl", "restart", "rabbitmq-server"], check=True, timeout=timeout)
        else:
            self._ctl("stop", timeout=timeout)
            subprocess.run([shutil.which("rabbitmq-server") or "rabbitmq-server", "-detached"], check=False,
                           capture_output=True, timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ctl("await_startup", "--timeout", "10", timeout=30).returncode == 0:
                return
            time.sleep(1)
        raise BrokerError("RabbitMQ did not come back after the restart: see its log")


def _systemd_active() -> bool:
    try:
        done = subprocess.run(["systemctl", "is-active", "--quiet", "rabbitmq-server"], timeout=10, check=False,
                              capture_output=True)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def crl_hash(pem: bytes) -> str:
    """OpenSSL's issuer-name hash of a CRL: the file name Erlang's ssl_crl_hash_dir looks up."""
    try:
        done = subprocess.run(["openssl", "crl", "-hash", "-noout"], input=pem, capture_output=True, timeout=30,
                              check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BrokerError(f"openssl could not read a CRL: {type(exc).__name__}") from None
    return done.stdout.decode().split()[0]


def _crl_key(pem: bytes) -> str:
    """The CRL's issuer key identifier (hex): which CA's CRL a file holds."""
    from cryptography import x509

    crl = x509.load_pem_x509_crl(pem)
    try:
        key_id = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        key_id = None
    if key_id is not None:
        return key_id.hex()
    return hashlib.sha256(crl.issuer.public_bytes()).hexdigest()


def place_crl(folder: Path, pem: bytes) -> bool:
    """Put one CA's new CRL into a broker's CRL folder: over that CA's previous one (same
    issuer key), else at the next free `<hash>.rN`. True when the folder changed."""
    name, key = crl_hash(pem), _crl_key(pem)
    index = 0
    while (path := folder / f"{name}.r{index}").exists():
        current = path.read_bytes()
        if current == pem:
            return False
        try:
            same = _crl_key(current) == key
        except ValueError:
            same = False
        if same:
            break
        index += 1
    _atomic_write(path, pem, 0o644)
    return True
