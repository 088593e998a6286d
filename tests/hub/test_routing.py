"""Routing at the hub: its own subtree locally, a child prefix to that child's link (the
longest match), the rest to the parent link or, with none, on paper; and who published a
message, from the AMQP user RabbitMQ vouched for."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from docex.hub.context import HubContext, Origin
from docex.hub.db import Database
from docex.hub.models import Link, Unit
from docex.protocols.address import Route


def _links(db: Database, *links: Link) -> None:
    with db.session() as s:
        s.add_all(links)


def test_without_links_the_own_subtree_is_local_and_the_rest_paper(ctx: HubContext) -> None:
    assert ctx.route("qingyuan.yangshan.zfb") == Route("local")
    assert ctx.route("qingyuan.yangshan.town.office") == Route("local")
    assert ctx.route("qingyuan.yingde.zfb") == Route("paper")
    assert ctx.route("guangdong.swb") == Route("paper")


def test_children_and_parent_links_route_by_longest_prefix(ctx: HubContext, db: Database) -> None:
    _links(db, Link(name="parent", prefix="", role="parent", broker_user="t1.link.parent"),
           Link(name="yangcheng", prefix="qingyuan.yangshan.yangcheng", role="child", broker_user="t1.link.yangcheng"),
           Link(name="yangcheng-school", prefix="qingyuan.yangshan.yangcheng.school", role="child"))
    ctx.refresh_links()
    assert ctx.route("qingyuan.yangshan.zfb") == Route("local")
    assert ctx.route("qingyuan.yangshan.yangcheng.zf") == Route("child", "yangcheng")
    assert ctx.route("qingyuan.yangshan.yangcheng.school.no1") == Route("child", "yangcheng-school")
    assert ctx.route("qingyuan.swb") == Route("parent", "parent")
    assert ctx.child_prefixes() == ("qingyuan.yangshan.yangcheng", "qingyuan.yangshan.yangcheng.school")


def test_origin_is_the_unit_or_link_rabbitmq_authenticated(ctx: HubContext, db: Database) -> None:
    _links(db, Link(name="parent", prefix="", role="parent", broker_user="t1.link.parent"))
    ctx.refresh_links()
    assert ctx.origin("t1.qingyuan.yangshan.zfb") == Origin("unit", "qingyuan.yangshan.zfb", "t1.qingyuan.yangshan.zfb")
    assert ctx.origin("t1.link.parent") == Origin("link", "parent", "t1.link.parent")
    assert ctx.origin("guest") is None  # not one of ours (no user prefix)
    assert ctx.origin(None) is None and ctx.origin("") is None


def test_links_added_later_are_seen_after_a_refresh(ctx: HubContext, db: Database) -> None:
    assert ctx.route("qingyuan.swb") == Route("paper")
    _links(db, Link(name="parent", prefix="", role="parent"))
    ctx.refresh_links()
    assert ctx.route("qingyuan.swb") == Route("parent", "parent")


@pytest.mark.timeout(20)
def test_routing_inside_a_write_transaction_does_not_wait_on_itself(ctx: HubContext, db: Database) -> None:
    """Intake routes recipients while holding SQLite's write lock; re-reading the links
    then must not need a second writer (it once waited 30 s for its own lock)."""
    with db.session() as s:
        s.add(Unit(address="qingyuan.yangshan.zfb", name="县府办"))
        s.flush()
        ctx.refresh_links()
        assert ctx.route("qingyuan.yangshan.zfb") == Route("local")
        assert s.execute(select(Unit.address)).scalars().all() == ["qingyuan.yangshan.zfb"]
