"""Where the broker is and how to log in; passwords never appear in repr or logs."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field, replace
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pika


def amqp_url(
    user: str,
    password: str,
    vhost: str = "/",
    host: str = "127.0.0.1",
    port: int = 5672,
) -> str:
    """An amqp:// URL; user, password and vhost are percent-quoted (vhost "/" becomes %2F)."""
    return (
        f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/"
        f"{quote(vhost, safe='')}"
    )


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


@dataclass(frozen=True)
class BrokerSettings:
    url: str
    management_url: str = "http://127.0.0.1:15672"
    management_user: str = "guest"
    management_password: str = "guest"
    heartbeat: int = 30
    prefetch: int = 64
    # A connection blocked by a RabbitMQ resource alarm longer than this is dropped,
    # so a publisher fails with a clear error instead of hanging forever.
    blocked_timeout: float = 120.0
    # amqps:// logins by certificate (SASL EXTERNAL): the CA that issued the broker's server
    # certificate, and the client's certificate and key (the key's passphrase, if encrypted).
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_key_password: bytes | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"BrokerSettings(url={redact_url(self.url)!r}, "
            f"management_url={self.management_url!r}, management_user={self.management_user!r}, "
            f"heartbeat={self.heartbeat}, prefetch={self.prefetch}, tls_cert={self.tls_cert!r})"
        )

    __str__ = __repr__

    @property
    def vhost(self) -> str:
        path = urlsplit(self.url).path
        return unquote(path[1:]) if len(path) > 1 else "/"

    @property
    def user(self) -> str:
        return unquote(urlsplit(self.url).username or "guest")

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    @property
    def hosts(self) -> list[tuple[str, int]]:
        """Every broker node the URL names. A cluster is several, comma-separated:
        amqp://user:pw@node1:5672,node2:5672,node3:5672/vhost; clients try them in order."""
        netloc = urlsplit(self.url).netloc.rsplit("@", 1)[-1]
        default = 5671 if self.tls else 5672
        found = []
        for part in netloc.split(","):
            part = part.strip()
            if part.startswith("["):  # [::1]:5672
                host, _, rest = part[1:].partition("]")
                port = rest.removeprefix(":")
            else:
                host, _, port = part.partition(":")
            found.append((host or "127.0.0.1", int(port) if port else default))
        return found

    def parameters(self, connection_name: str | None = None) -> pika.URLParameters:
        """pika parameters of the first node; the connection name shows in the management UI."""
        return self.parameter_list(connection_name)[0]

    def parameter_list(self, connection_name: str | None = None) -> list[pika.URLParameters]:
        """pika parameters for every node, in order (pika fails over down the list)."""
        parts = urlsplit(self.url)
        userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        if self.tls and self.tls_cert:  # a certificate login: the URL's user names it, no password
            userinfo = ""
        result = []
        for host, port in self.hosts:
            where = f"[{host}]" if ":" in host else host
            url = urlunsplit(parts._replace(netloc=f"{userinfo}{where}:{port}"))
            params = pika.URLParameters(url)
            params.heartbeat = self.heartbeat
            params.blocked_connection_timeout = self.blocked_timeout
            params.client_properties = {"connection_name": connection_name or f"docex:{self.user}"}
            if self.tls:
                params.ssl_options = pika.SSLOptions(self.ssl_context(), host)
                if self.tls_cert:
                    params.credentials = pika.credentials.ExternalCredentials()
            result.append(params)
        return result

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "amqps"

    def ssl_context(self) -> ssl.SSLContext:
        """TLS 1.2+, the broker's certificate checked against `tls_ca` (host name included),
        and our client certificate presented when we have one."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca or None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.tls_cert:
            ctx.load_cert_chain(self.tls_cert, self.tls_key or None, password=self.tls_key_password)
        return ctx

    def for_login(self, user: str, password: str, vhost: str | None = None) -> BrokerSettings:
        """Same broker (every node) and management API, another login (and optionally vhost)."""
        parts = urlsplit(self.url)
        nodes = parts.netloc.rsplit("@", 1)[-1]
        vh = self.vhost if vhost is None else vhost
        url = urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{nodes}",
                                        path="/" + quote(vh, safe="")))
        return replace(self, url=url)
