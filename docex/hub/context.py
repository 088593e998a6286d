"""What every hub handler needs, built once per process."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import select

from docex.hub import broker
from docex.hub.config import HubConfig
from docex.hub.content_store import ContentStore
from docex.hub.db import Database
from docex.hub.identity import HubIdentity
from docex.hub.models import Link
from docex.monitoring.observer import NullObserver, Observer
from docex.pki.timestamps import Stamper
from docex.protocols.address import Route, route_for


@dataclass(frozen=True)
class Origin:
    """Who put a message on our ingress, as RabbitMQ authenticated it."""

    kind: str  # unit | link
    name: str  # the unit's address or the link's name
    user: str


@dataclass
class HubContext:
    config: HubConfig
    db: Database
    identity: HubIdentity
    observer: Observer = field(default_factory=NullObserver)
    stamper: Stamper | None = None  # the hub's TSA, in-process (docex.hub.stamping)
    _links: dict[str, Link] = field(default_factory=dict)
    _links_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def content(self) -> ContentStore:
        """Envelope and chunk bytes on disk (HUBDIR/content)."""
        return ContentStore(self.config.content_dir)

    def links(self) -> dict[str, Link]:
        """Links by name, re-read every few seconds (`docex link create` adds them live)."""
        with self._lock:
            if time.monotonic() - self._links_at > 5.0:
                # A read transaction: callers hold a write transaction on SQLite, and a
                # second writer on another connection would wait for it (a self-deadlock).
                with self.db.read() as s:
                    self._links = {link.name: link for link in s.execute(select(Link)).scalars()}
                self._links_at = time.monotonic()
            return dict(self._links)

    def child_prefixes(self) -> tuple[str, ...]:
        return tuple(sorted(link.prefix for link in self.links().values() if link.role == "child"))

    def refresh_links(self) -> None:
        with self._lock:
            self._links_at = 0.0

    def route(self, address: str) -> Route:
        links = self.links()
        children = [link.prefix for link in links.values() if link.role == "child"]
        has_parent = any(link.role == "parent" for link in links.values())
        route = route_for(address, self.config.prefix, children, has_parent)
        if route.kind == "child":
            name = next(n for n, link in links.items() if link.role == "child" and link.prefix == route.link)
            return Route("child", name)
        if route.kind == "parent":
            name = next(n for n, link in links.items() if link.role == "parent")
            return Route("parent", name)
        return route

    def origin(self, user_id: str | None) -> Origin | None:
        if not user_id:
            return None
        for name, link in self.links().items():
            if link.broker_user and link.broker_user == user_id:
                return Origin("link", name, user_id)
        address = broker.address_of_user(self.config, user_id)
        if address is None:
            return None
        return Origin("unit", address, user_id)

