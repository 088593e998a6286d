"""`docex hub dead-letters list|replay`: what consumers gave up on, and putting it back."""

from __future__ import annotations

import click

from docex.cli.options import echo_json, handles_errors, json_option
from docex.protocols import localtime

HOME = click.option("--home", required=True, type=click.Path(file_okay=False), help="信息中心(hub)目录 (hub home folder).")
KIND_ZH = {"document": "公文", "receipt": "回执", "notice": "通知"}


def _plain(value: str) -> str:
    """A value a publisher chose (message id, reason), with control characters shown, not run
    by the terminal."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in value)


@click.group("dead-letters")
def dead_letters() -> None:
    """死信：多次处理失败的消息，排除原因后重新投递 (dead letters: list, replay)."""


@dead_letters.command("list")
@HOME
@click.option("--all", "include_replayed", is_flag=True, help="也列出已重新投递的 (include replayed ones).")
@json_option
@handles_errors
def list_(home: str, include_replayed: bool, as_json: bool) -> None:
    """列出死信 (list dead letters)."""
    from docex.hub.config import HubConfig
    from docex.hub.db import Database
    from docex.hub.dead_letters import list_dead_letters

    config = HubConfig.load(home)
    db = Database(config.database_url)
    try:
        rows = list_dead_letters(config, db, include_replayed=include_replayed)
    finally:
        db.dispose()
    if as_json:
        echo_json([r.as_json() for r in rows])
        return
    if not rows:
        click.echo("没有死信 (no dead letters)")
        return
    for r in rows:
        state = "已重新投递" if r.replayed else ("待处理" if r.kept else "内容已清理")
        where = r.recipient or r.queue
        tries = f"  尝试 {r.tries} 次" if r.tries else ""
        click.echo(f"#{r.id}  {localtime.show(r.at)}  {KIND_ZH.get(r.kind, r.kind or '?')}  {_plain(r.message_id)}  "
                   f"{_plain(where)}  {state}{tries}  {_plain(r.reason)}")


@dead_letters.command("replay")
@HOME
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "replay_all", is_flag=True, help="重新投递全部待处理的死信 (replay every pending one).")
@json_option
@handles_errors
def replay_(home: str, ids: tuple[int, ...], replay_all: bool, as_json: bool) -> None:
    """排除原因后重新投递死信 (put dead letters back once the cause is fixed)."""
    from docex.broker import ConfirmedPublisher
    from docex.hub import broker
    from docex.hub.config import HubConfig
    from docex.hub.db import Database
    from docex.hub.dead_letters import ReplayError, list_dead_letters, replay

    config = HubConfig.load(home)
    db = Database(config.database_url)
    results: list[dict[str, object]] = []
    try:
        chosen = list(ids) or ([d.id for d in list_dead_letters(config, db)] if replay_all else [])
        if not chosen:
            raise click.UsageError("请给出死信编号或 --all (give dead-letter ids or --all)")
        with ConfirmedPublisher.open(broker.settings(config), connection_name="docex-dead-letter-replay") as pub:
            for number in chosen:
                try:
                    done = replay(config, db, pub, number)
                    results.append({"id": number, "ok": True, "message_id": done.message_id})
                    if not as_json:
                        click.echo(f"#{number} {_plain(done.message_id)} 已重新投递 (replayed)")
                except ReplayError as exc:
                    results.append({"id": number, "ok": False, "message": str(exc)})
                    if not as_json:
                        click.echo(f"#{number} {exc}", err=True)
    finally:
        db.dispose()
    if as_json:
        echo_json(results)
    if not all(r["ok"] for r in results):
        raise SystemExit(2)
