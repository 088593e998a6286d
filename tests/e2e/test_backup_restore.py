"""Backup and restore on a real network: the hub is backed up while in use, its home,
database and broker vhost are thrown away (a new machine), `docex hub restore` brings them
back (the vhost, queues and every login's rights), and the restored hub keeps delivering to
the agents, which reconnect by themselves, tracks the documents from before and its audit
chain verifies."""

from __future__ import annotations

import json
import shutil
import signal

import pytest

from docex.agent.actions import sign_for
from docex.broker import Management
from docex.cli.localnet import MANAGEMENT_URL
from docex.hub.content_store import ContentStore
from docex.hub.db import Database
from docex.hub.models import Document
from tests.cli.runner import run
from tests.e2e.conftest import NetworkFactory
from tests.e2e.support import SENDER

pytestmark = pytest.mark.rabbitmq


def test_a_restored_hub_keeps_delivering_tracking_and_verifying(network: NetworkFactory) -> None:
    net = network(3)
    recipient = next(a for a in net.addresses if a != SENDER)
    net.start_hub()
    net.start_agents()
    before, _ = net.send(SENDER, [recipient], doc_number="阳信发〔2011〕31号")
    net.wait_hub(before, "delivered", [recipient])
    sign_for(net.agent(recipient), before)
    net.wait_hub(before, "signed_for", [recipient])

    archive = net.hub_home.parent / "hub-backup.tar.gz"
    result = run("hub", "backup", "--home", net.hub_home, "-o", archive, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"]["documents"] == 1

    # the old machine is gone: no home, no database, and the broker's vhost (queues, rights)
    # with it; the logins are still known to the broker (as a broker restored from its
    # definitions, or with certificate logins, has them)
    net.stop("hub", signal.SIGTERM)
    net.db.dispose()
    shutil.move(net.hub_home, net.hub_home.parent / "old-hub")
    with Management(MANAGEMENT_URL, "guest", "guest") as mgmt:
        mgmt.delete_vhost(net.config.broker.vhost)
        assert not mgmt.vhost_exists(net.config.broker.vhost)
    result = run("hub", "restore", archive, "--home", net.hub_home, "--json")
    assert result.exit_code == 0, result.output
    restored = json.loads(result.output)
    assert restored["audit_ok"] and restored["rows"]["documents"] == 1 and restored["units_without_broker_login"] == []
    assert (net.hub_home / "ca" / "ca.crt").read_bytes() == (net.hub_home.parent / "old-hub" / "ca" / "ca.crt").read_bytes()
    net.db = Database(net.config.database_url)
    # the envelopes came back in the content store, not in the database: an evidence bundle
    # of the document from before still holds its envelope
    with net.db.read() as s:
        digest = s.get(Document, before).envelope_sha256
    assert ContentStore(net.hub_home / "content").has(digest)

    net.start_hub()
    after, _ = net.send(SENDER, [recipient], doc_number="阳信发〔2011〕32号")
    net.wait_hub(after, "delivered", [recipient])
    tracked = run("track", "--home", net.hub_home, before, "--json")
    assert tracked.exit_code == 0 and json.loads(tracked.output)["recipients"][0]["state"] == "signed_for"
    verified = run("audit", "verify", "--home", net.hub_home, "--json")
    assert verified.exit_code == 0 and json.loads(verified.output)["ok"], verified.output

    again = run("hub", "restore", archive, "--home", net.hub_home)
    assert again.exit_code == 2 and "hub_exists" in again.output + again.stderr
