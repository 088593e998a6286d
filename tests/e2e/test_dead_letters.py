"""Dead letters are never silent: a copy a recipient's agent fails on every time (its inbox
folder is not a folder) is dead-lettered after the delivery limit, the delivery is marked,
the sender is told with a signed notice, `docex hub dead-letters list` shows it, and once
the cause is fixed `replay` delivers it, exactly once."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest

from docex.hub.models import Rejection
from tests.cli.runner import run
from tests.e2e.conftest import NetworkFactory
from tests.e2e.support import SENDER, Network, wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

VICTIM, OTHER = "qingyuan.yangshan.zfb", "qingyuan.yangshan.xwb"


@pytest.fixture(scope="module")
def county(network: NetworkFactory) -> Iterator[Network]:
    net = network(3)
    net.start_hub()
    net.start_agents()
    yield net


def test_a_poison_copy_is_dead_lettered_told_and_replayed(county: Network) -> None:
    inbox = county.home(VICTIM) / "inbox"
    saved = inbox.with_name("inbox.saved")
    inbox.rename(saved)
    inbox.write_text("not a folder")  # every try to write the document fails the same way
    try:
        mid, files = county.send(SENDER, [VICTIM, OTHER], doc_number="阳信发〔2011〕77号")
        wait_until(lambda: county.hub_states(mid) == {VICTIM: "dead_letter", OTHER: "delivered"}, 120,
                   "the poison copy dead-lettered, the other delivered")
        notice = county.wait_notice(SENDER, mid, "dead_letter")
        assert notice.event == "dead_letter"
        wait_until(lambda: county.sent(SENDER, mid)[VICTIM].state == "dead_letter", 60, "the sender's view")
        listed = json.loads(run("hub", "dead-letters", "list", "--home", county.hub_home, "--json").output)
        mine = [d for d in listed if d["message_id"] == mid]
        assert len(mine) == 1 and mine[0]["recipient"] == VICTIM and mine[0]["kind"] == "document"
        assert mine[0]["kept"] and not mine[0]["replayed"]
        assert county.audit(mid, "message.dead_letter")
    finally:
        inbox.unlink()
        saved.rename(inbox)  # the cause is fixed

    result = run("hub", "dead-letters", "replay", "--home", county.hub_home, str(mine[0]["id"]))
    assert result.exit_code == 0, result.output
    county.wait_hub(mid, "delivered", [VICTIM, OTHER])
    wait_until(lambda: county.sent(SENDER, mid)[VICTIM].state == "delivered", 60, "the sender told of the delivery")
    got = county.inbox_files(VICTIM, mid)
    assert {name: got.get(name) for name in files} == files
    assert county.count(Rejection, Rejection.message_id == mid, Rejection.code == "dead_letter_replayed") == 1
    again = run("hub", "dead-letters", "replay", "--home", county.hub_home, str(mine[0]["id"]))
    assert again.exit_code == 2  # replayed once; not again
    assert county.audit(mid, "message.dead_letter_replay")
    shutil.rmtree(saved, ignore_errors=True)
