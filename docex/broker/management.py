"""A small client for the RabbitMQ management HTTP API (vhosts, users, permissions, queues)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from docex.broker.errors import BrokerError
from docex.broker.settings import BrokerSettings

_QUEUE_COLUMNS = (
    "name",
    "vhost",
    "type",
    "messages_ready",
    "messages_unacknowledged",
    "messages",
    "consumers",
    "arguments",
)


def _q(name: str) -> str:
    return quote(name, safe="")


@dataclass(frozen=True)
class QueueInfo:
    name: str
    vhost: str
    type: str
    messages_ready: int
    messages_unacknowledged: int
    messages: int
    consumers: int
    arguments: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> QueueInfo:
        # Fresh queues have no message stats yet: count them as empty.
        return cls(
            name=str(data["name"]),
            vhost=str(data.get("vhost", "")),
            type=str(data.get("type", "classic")),
            messages_ready=int(data.get("messages_ready") or 0),
            messages_unacknowledged=int(data.get("messages_unacknowledged") or 0),
            messages=int(data.get("messages") or 0),
            consumers=int(data.get("consumers") or 0),
            arguments=dict(data.get("arguments") or {}),
        )


@dataclass(frozen=True)
class ConnectionInfo:
    name: str
    user: str
    vhost: str
    connection_name: str | None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ConnectionInfo:
        props = data.get("client_properties") or {}
        return cls(
            name=str(data["name"]),
            user=str(data.get("user", "")),
            vhost=str(data.get("vhost", "")),
            connection_name=props.get("connection_name"),
        )


class Management:
    """RabbitMQ management API client. Every failure raises BrokerError with the HTTP status.

    Queue depths come from the management statistics, which RabbitMQ refreshes every few
    seconds: fine for dashboards and operators, not for exact counting in tests.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:15672",
        user: str = "guest",
        password: str = "guest",
        *,
        timeout: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.auth = (user, password)

    @classmethod
    def from_settings(cls, settings: BrokerSettings) -> Management:
        return cls(settings.management_url, settings.management_user, settings.management_password)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Management:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        ok_missing: bool = False,
    ) -> Any:
        try:
            resp = self._session.request(
                method,
                self.url + path,
                json=json,
                headers=headers,
                params=params,
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise BrokerError(
                f"无法连接 RabbitMQ 管理接口 {self.url} (cannot reach management API): "
                f"{type(exc).__name__}"
            ) from None
        if resp.status_code == 404 and ok_missing:
            return None
        if resp.status_code >= 400:
            raise BrokerError(
                f"RabbitMQ 管理接口 {method} {path}: HTTP {resp.status_code}: {_reason(resp)}",
                status=resp.status_code,
            )
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return None

    # -- vhosts -------------------------------------------------------------------------

    def create_vhost(self, name: str, *, description: str = "") -> None:
        body = {"description": description} if description else None
        self._request("PUT", f"/api/vhosts/{_q(name)}", json=body)

    def delete_vhost(self, name: str, *, missing_ok: bool = True) -> None:
        self._request("DELETE", f"/api/vhosts/{_q(name)}", ok_missing=missing_ok)

    def vhost_exists(self, name: str) -> bool:
        return self._request("GET", f"/api/vhosts/{_q(name)}", ok_missing=True) is not None

    # -- users and permissions ----------------------------------------------------------

    def create_user(self, name: str, password: str | None, tags: Iterable[str] = ()) -> None:
        """Create or update a user (PUT is idempotent: re-running sets the password again).
        Without a password (None) the user can log in only by certificate (SASL EXTERNAL):
        an empty password hash refuses every PLAIN login."""
        body = {"password": password, "tags": ",".join(tags)} if password is not None else {
            "password_hash": "", "tags": ",".join(tags)}
        self._request("PUT", f"/api/users/{_q(name)}", json=body)

    def delete_user(self, name: str, *, missing_ok: bool = True) -> None:
        self._request("DELETE", f"/api/users/{_q(name)}", ok_missing=missing_ok)

    def user_exists(self, name: str) -> bool:
        return self._request("GET", f"/api/users/{_q(name)}", ok_missing=True) is not None

    def set_permissions(self, vhost: str, user: str, configure: str, write: str, read: str) -> None:
        body = {"configure": configure, "write": write, "read": read}
        self._request("PUT", f"/api/permissions/{_q(vhost)}/{_q(user)}", json=body)

    def clear_permissions(self, vhost: str, user: str) -> None:
        self._request("DELETE", f"/api/permissions/{_q(vhost)}/{_q(user)}", ok_missing=True)

    def set_topic_permissions(
        self, vhost: str, user: str, exchange: str, write: str, read: str
    ) -> None:
        body = {"exchange": exchange, "write": write, "read": read}
        self._request("PUT", f"/api/topic-permissions/{_q(vhost)}/{_q(user)}", json=body)

    # -- queues and policies ------------------------------------------------------------

    def list_queues(self, vhost: str) -> list[QueueInfo]:
        # Only the columns we read: a hub vhost has 125+ queues with large stats objects.
        params = {"columns": ",".join(_QUEUE_COLUMNS)}
        data = self._request("GET", f"/api/queues/{_q(vhost)}", params=params) or []
        return [QueueInfo.from_api(item) for item in data]

    def get_queue(self, vhost: str, name: str) -> QueueInfo | None:
        data = self._request("GET", f"/api/queues/{_q(vhost)}/{_q(name)}", ok_missing=True)
        return None if data is None else QueueInfo.from_api(data)

    def set_policy(
        self,
        vhost: str,
        name: str,
        pattern: str,
        definition: Mapping[str, Any],
        *,
        priority: int = 0,
        apply_to: str = "queues",
    ) -> None:
        body = {
            "pattern": pattern,
            "definition": dict(definition),
            "priority": priority,
            "apply-to": apply_to,
        }
        self._request("PUT", f"/api/policies/{_q(vhost)}/{_q(name)}", json=body)

    def delete_policy(self, vhost: str, name: str) -> None:
        self._request("DELETE", f"/api/policies/{_q(vhost)}/{_q(name)}", ok_missing=True)

    # -- connections --------------------------------------------------------------------

    def list_connections(self, vhost: str | None = None) -> list[ConnectionInfo]:
        path = "/api/connections" if vhost is None else f"/api/vhosts/{_q(vhost)}/connections"
        data = self._request("GET", path) or []
        return [ConnectionInfo.from_api(item) for item in data]

    def close_user_connections(self, user: str, reason: str = "closed by docex operator") -> None:
        """Force-close every connection of a user at once (e.g. a revoked unit)."""
        self._request(
            "DELETE",
            f"/api/connections/username/{_q(user)}",
            headers={"X-Reason": reason},
            ok_missing=True,
        )

    def close_connection(self, name: str, reason: str = "closed by docex operator") -> None:
        """Force-close a client connection (the client sees CONNECTION_FORCED)."""
        self._request(
            "DELETE", f"/api/connections/{_q(name)}", headers={"X-Reason": reason}, ok_missing=True
        )


def _reason(resp: requests.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.reason or "no reason given"
    if isinstance(data, dict):
        return str(data.get("reason") or data.get("error") or resp.reason)
    return resp.reason or "no reason given"
