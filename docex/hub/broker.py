"""The hub's side of the broker: its settings, its management client, topology."""

from __future__ import annotations

from urllib.parse import quote

from docex.broker import BrokerSettings, Management, connect
from docex.broker.topology import declare_hub_topology, declare_link_queue, declare_unit_queue
from docex.hub.config import HubConfig


def settings(config: HubConfig, *, prefetch: int = 64) -> BrokerSettings:
    b = config.broker
    return BrokerSettings(
        url=b.url,
        management_url=b.management_url,
        management_user=b.management_user,
        management_password=b.management_password,
        prefetch=prefetch,
    )


def management(config: HubConfig) -> Management:
    b = config.broker
    return Management(b.management_url, b.management_user, b.management_password)


def hub_user(config: HubConfig) -> str:
    """The hub's own broker login (the user_id RabbitMQ lets it claim)."""
    return BrokerSettings(url=config.broker.url).user


def first_agent_host(config: HubConfig) -> str:
    """The host units reach the hub machine at (the first node of a cluster list)."""
    first = config.broker.agent_host.split(",")[0]
    return first.rsplit(":", 1)[0] if first.count(":") == 1 else first


def agent_nodes(config: HubConfig, port: int) -> str:
    """host:port of the broker as units reach it; `agent_host` may list a cluster's nodes
    itself ("node1:5672,node2:5672,node3:5672"), ports included."""
    host = config.broker.agent_host
    if "," in host or host.count(":") == 1:
        return host
    return f"{host}:{port}"


def broker_user(config: HubConfig, address: str) -> str:
    """Unit addresses are broker user names (RabbitMQ checks user_id against them)."""
    return config.broker.user_prefix + address


def login_url(config: HubConfig, user: str, password: str | None) -> str:
    """How a unit or bridge reaches this hub's vhost: by certificate over TLS once the broker
    has it (`docex broker tls`), else with the password (a development broker)."""
    b = config.broker
    vhost = quote(b.vhost, safe="")
    if b.tls_port:
        return f"amqps://{quote(user, safe='')}@{agent_nodes(config, b.tls_port)}/{vhost}"
    return f"amqp://{quote(user, safe='')}:{quote(password or '', safe='')}@{agent_nodes(config, b.agent_port)}/{vhost}"


def address_of_user(config: HubConfig, user_id: str | None) -> str | None:
    prefix = config.broker.user_prefix
    if not user_id or not user_id.startswith(prefix):
        return None
    return user_id[len(prefix) :]


def declare(config: HubConfig, *, units: tuple[str, ...] = (), links: tuple[str, ...] = ()) -> None:
    """Declare the hub topology and the given unit and link queues (idempotent)."""
    conn = connect(settings(config), "docex-hub-admin")
    try:
        channel = conn.channel()
        declare_hub_topology(channel, config.broker.delivery_limit)
        for address in units:
            declare_unit_queue(channel, address, config.broker.delivery_limit)
        for name in links:
            declare_link_queue(channel, name, config.broker.delivery_limit)
    finally:
        conn.close()
