"""`docex broker`: the information centre's own RabbitMQ (TLS and certificate logins)."""

from __future__ import annotations

from pathlib import Path

import click

from docex.cli.options import (
    PassphraseSource,
    echo_json,
    handles_errors,
    json_option,
    passphrase_options,
)


@click.group()
def broker() -> None:
    """消息服务器 The local RabbitMQ: TLS listener and certificate logins."""


@broker.command()
@click.option("--home", "homes", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="A hub home that uses this broker (repeat for hubs sharing it).")
@click.option("--config-file", default="/etc/rabbitmq/rabbitmq.conf", show_default=True,
              type=click.Path(dir_okay=False), help="The node's rabbitmq.conf (docex-tls/ is made beside it).")
@click.option("--advanced-config", type=click.Path(dir_okay=False),
              help="The node's advanced.config (default: beside rabbitmq.conf), for the TLS options.")
@click.option("--node", default="", help="rabbitmqctl -n NODE (default: this machine's node).")
@click.option("--listen", default="5671", show_default=True, help="TLS listener: PORT or IP:PORT.")
@click.option("--hostname", "hostnames", multiple=True, help="Another name units use to reach the broker.")
@click.option("--server-ca", type=click.Path(exists=True, file_okay=False),
              help="CA folder issuing the broker's certificate (default: the first hub's CA).")
@click.option("--no-restart", is_flag=True, help="Write the files; do not restart even if the listener changed.")
@passphrase_options
@json_option
@handles_errors
def tls(homes: tuple[str, ...], config_file: str, advanced_config: str | None, node: str, listen: str, hostnames: tuple[str, ...],
        server_ca: str | None, no_restart: bool, passphrase: PassphraseSource, as_json: bool) -> None:
    """配置 TLS 与证书登录 Configure TLS with certificate logins (SASL EXTERNAL) for these hubs.

    Restarts RabbitMQ only when the listener changes; otherwise refreshes the CA bundle and
    the server certificate and clears the broker's PEM cache. Says what it changed."""
    from docex.broker.tls import BrokerNode
    from docex.hub.broker_tls import configure

    target = BrokerNode(config_file=Path(config_file), node=node, listen=listen,
                        advanced_file=Path(advanced_config) if advanced_config else None)
    report = configure(homes, target, server_ca=server_ca, server_ca_passphrase=passphrase.get() if server_ca else None,
                       hostnames=hostnames, restart=not no_restart)
    if as_json:
        echo_json(report.as_dict())
        return
    if not report.changes:
        click.echo(f"无变化 nothing to change: TLS on port {report.port} for {', '.join(report.hubs) or 'no hub'}")
    for line in report.changes:
        click.echo(f"- {line}")
