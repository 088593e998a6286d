import uuid

import pytest

from docex.broker.errors import BrokerError
from docex.broker.management import Management

pytestmark = pytest.mark.rabbitmq


def test_vhost_lifecycle(management: Management) -> None:
    name = f"docex-test-{uuid.uuid4().hex[:8]}"
    assert not management.vhost_exists(name)
    management.create_vhost(name)
    try:
        assert management.vhost_exists(name)
        assert management.list_queues(name) == []
        assert management.get_queue(name, "nope") is None
        management.set_policy(name, "docex-len", r"^unit\.", {"max-length": 100000})
        management.delete_policy(name, "docex-len")
    finally:
        management.delete_vhost(name)
    assert not management.vhost_exists(name)
    management.delete_vhost(name)  # already gone: fine


def test_user_lifecycle_and_permissions(management: Management, vhost: str) -> None:
    user = f"docex-test-{uuid.uuid4().hex[:8]}"
    management.create_user(user, "pw", tags=["monitoring"])
    try:
        assert management.user_exists(user)
        management.set_permissions(vhost, user, "^$", r"^docex\.ingress$", r"^unit\.a$")
        management.set_topic_permissions(vhost, user, "amq.topic", "^$", ".*")
        management.clear_permissions(vhost, user)
    finally:
        management.delete_user(user)
    assert not management.user_exists(user)


def test_errors_carry_status_and_reason(management: Management) -> None:
    with pytest.raises(BrokerError) as info:
        management.set_permissions("docex-test-no-such-vhost", "guest", ".*", ".*", ".*")
    assert info.value.status == 400
    assert "HTTP 400" in str(info.value)


def test_unreachable_api_is_a_named_error() -> None:
    with Management("http://127.0.0.1:1", timeout=2) as mgmt, pytest.raises(BrokerError) as info:
        mgmt.vhost_exists("x")
    assert info.value.status is None
    assert "management API" in str(info.value)


def test_wrong_password_is_401(management: Management) -> None:
    with Management(management.url, "guest", "wrong") as mgmt, pytest.raises(BrokerError) as info:
        mgmt.list_queues("/")
    assert info.value.status == 401
