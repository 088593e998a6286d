"""`docex hub init`: a hub home with its config, CA, server certificate, database and
broker vhost, users and topology."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from docex.broker import Management
from docex.broker.topology import hub_permissions
from docex.hub import broker, network
from docex.hub.config import BrokerConfig, HubConfig, KeyConfig
from docex.hub.db import migrate
from docex.pki.ca import CertificateAuthority
from docex.protocols.address import check_address
from docex.protocols.errors import DocexError
from docex.protocols.safepath import private_dir


def _split_admin_url(url: str) -> tuple[str, str, str, int]:
    parts = urlsplit(url)
    return (unquote(parts.username or "guest"), unquote(parts.password or "guest"), parts.hostname or "127.0.0.1", parts.port or 5672)


def _server_names(*hosts: str) -> dict[str, list[str]]:
    import ipaddress
    import socket

    dns, ips = [], []
    for name in dict.fromkeys(("localhost", "127.0.0.1", socket.gethostname(), *hosts)):
        try:
            ips.append(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.append(name)
    return {"dns_names": dns, "ip_addresses": ips}


def init_hub(
    home: str | Path,
    prefix: str,
    *,
    name: str | None = None,
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/",
    management_url: str = "http://127.0.0.1:15672",
    vhost: str | None = None,
    database_url: str | None = None,
    passphrase: bytes | None,
    keys: KeyConfig,
    import_ca: str | Path | None = None,
    trust: tuple[str | Path, ...] = (),
    user_prefix: str = "",
    public_host: str | None = None,
) -> HubConfig:
    """Everything or nothing: a failure (the broker down, a bad CA) removes what this
    call made, so the same command can simply be run again."""
    root = Path(home).resolve()
    check_address(prefix)
    if (root / "docex.toml").exists():
        raise DocexError("hub_exists", f"{root} is already a hub home")
    created_root = not root.exists()
    before = set(root.iterdir()) if root.exists() else set()
    try:
        return _init(root, prefix, name=name, amqp_url=amqp_url, management_url=management_url, vhost=vhost,
                     database_url=database_url, passphrase=passphrase, keys=keys, import_ca=import_ca, trust=trust,
                     user_prefix=user_prefix, public_host=public_host)
    except BaseException:
        if created_root:
            shutil.rmtree(root, ignore_errors=True)
        elif root.exists():
            for made in set(root.iterdir()) - before:
                shutil.rmtree(made, ignore_errors=True) if made.is_dir() else made.unlink(missing_ok=True)
        raise


def _init(
    root: Path,
    prefix: str,
    *,
    name: str | None,
    amqp_url: str,
    management_url: str,
    vhost: str | None,
    database_url: str | None,
    passphrase: bytes | None,
    keys: KeyConfig,
    import_ca: str | Path | None,
    trust: tuple[str | Path, ...],
    user_prefix: str,
    public_host: str | None,
) -> HubConfig:
    boot_user, boot_password, host, port = _split_admin_url(amqp_url)
    with Management(management_url, boot_user, boot_password) as probe:
        probe.vhost_exists("/")  # the broker first: nothing is written if it cannot be reached
    root.mkdir(parents=True, exist_ok=True)
    vhost = vhost or f"docex-{prefix}"
    hub_user = f"{user_prefix}hub.{prefix}"
    hub_password = secrets.token_urlsafe(24)
    # The login given with --amqp only bootstraps: the hub keeps a dedicated administrator
    # of its own with a generated password (it creates and removes the units' users), never
    # the broker's guest/guest or whoever ran `hub init`.
    admin_user = f"{user_prefix}admin.{prefix}"
    admin_password = secrets.token_urlsafe(24)
    config = HubConfig(
        home=root,
        prefix=prefix,
        name=name or f"{prefix} 公文交换中心",
        database_url=database_url or f"sqlite:///{root / 'hub.db'}",
        broker=BrokerConfig(
            url=f"amqp://{quote(hub_user, safe='')}:{quote(hub_password, safe='')}@{host}:{port}/{quote(vhost, safe='')}",
            vhost=vhost,
            management_url=management_url,
            management_user=admin_user,
            management_password=admin_password,
            user_prefix=user_prefix,
            agent_host=host,
            agent_port=port,
        ),
        keys=keys,
    )
    if public_host:
        config = network.with_public_host(config, public_host)
    # The CA: the information centre's own, or an existing one imported.
    if import_ca:
        shutil.copytree(import_ca, config.ca_dir)
        ca = CertificateAuthority.open(config.ca_dir, passphrase)
    else:
        ca = CertificateAuthority.init(config.ca_dir, config.name, passphrase)
    # The hub's certificate also serves its read API and TSA over HTTPS: it names this machine.
    ca.issue_server(f"{config.name} hub", config.hub_dir, passphrase, hub_prefix=prefix, **_server_names(host, config.broker.agent_host))
    # The information centre's own time-stamping authority (RFC 3161), served at /tsa.
    ca.issue_tsa(f"{config.name} 时间戳服务", config.home / "tsa", passphrase)
    config.trust_dir.mkdir(exist_ok=True)
    for anchor in trust:
        shutil.copy(anchor, config.trust_dir / Path(anchor).name)
    private_dir(config.refused_dir)
    migrate(config.database_url)
    with Management(management_url, boot_user, boot_password) as boot:
        boot.create_vhost(vhost, description=f"docex hub {prefix}")
        # RabbitMQ has no per-vhost administrator: creating users needs the tag; its
        # permissions (queues, messages) cover this hub's vhost only.
        boot.create_user(admin_user, admin_password, tags=("administrator",))
        boot.set_permissions(vhost, admin_user, ".*", ".*", ".*")
    with broker.management(config) as mgmt:
        # The hub's own login: no management tag, permissions on its vhost alone; it cannot
        # list, read or even see other hubs' vhosts, queues or connections.
        mgmt.create_user(hub_user, hub_password, tags=())
        mgmt.set_permissions(vhost, hub_user, *hub_permissions())
    broker.declare(config)
    config.save()
    return config
