"""Dead letters are never silent: a copy a recipient's agent fails on every time (its inbox
folder is not a folder) is dead-lettered after the delivery limit, the delivery is marked,
the sender is told with a signed notice, `docex hub dead-letters list` shows it, and once
the cause is fixed `replay` delivers it, exactly once. The same for a document that died in
the hub's own ingress (its database refused to store it every time)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from docex.hub.models import Delivery, Document, Rejection
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
        assert mine[0]["tries"] == county.config.broker.delivery_limit + 1
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


REFUSED_NUMBER = "阳信发〔2011〕78号"


def _refuse_in_the_database(county: Network) -> None:
    """The fault: the hub's database refuses to store this one document (a constraint a
    botched change left behind), every time and at once. Not an outage: the database is up
    and answers, so intake's tries count toward the delivery limit and it is dead-lettered
    from the ingress. Deterministic: no timing decides which try fails."""
    with county.db.session() as s:
        if s.bind.dialect.name == "postgresql":
            s.execute(text(
                "CREATE FUNCTION docex_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.doc_number = '{REFUSED_NUMBER}' THEN RAISE EXCEPTION 'refused by a test constraint'; "
                "END IF; RETURN NEW; END $$"))
            s.execute(text("CREATE TRIGGER docex_test_refuse BEFORE INSERT ON documents FOR EACH ROW "
                           "EXECUTE FUNCTION docex_test_refuse()"))
        else:
            s.execute(text(f"CREATE TRIGGER docex_test_refuse BEFORE INSERT ON documents "
                           f"WHEN NEW.doc_number = '{REFUSED_NUMBER}' "
                           "BEGIN SELECT RAISE(ABORT, 'refused by a test constraint'); END"))


def _fix_the_database(county: Network) -> None:
    with county.db.session() as s:
        s.execute(text("DROP TRIGGER IF EXISTS docex_test_refuse" +
                       (" ON documents" if s.bind.dialect.name == "postgresql" else "")))
        if s.bind.dialect.name == "postgresql":
            s.execute(text("DROP FUNCTION IF EXISTS docex_test_refuse()"))


def test_a_document_that_died_in_the_hubs_ingress_is_replayed_accepted_and_delivered_once(county: Network) -> None:
    _refuse_in_the_database(county)
    try:
        mid, files = county.send(SENDER, [VICTIM, OTHER], doc_number=REFUSED_NUMBER)
        listed = wait_until(lambda: [d for d in json.loads(run("hub", "dead-letters", "list", "--home", county.hub_home,
                                                               "--json").output) if d["message_id"] == mid], 120,
                            "the document dead-lettered from the hub's ingress", interval=1.0)
        assert len(listed) == 1 and listed[0]["queue"] == "hub.ingress" and listed[0]["recipient"] == ""
        assert listed[0]["tries"] == county.config.broker.delivery_limit + 1 and listed[0]["kept"]
        # The hub never took it in; the sender is told it is a dead letter, for every recipient.
        assert county.count(Document, Document.message_id == mid) == 0
        assert county.wait_notice(SENDER, mid, "dead_letter").event == "dead_letter"
        wait_until(lambda: {a: r.state for a, r in county.sent(SENDER, mid).items()}
                   == {VICTIM: "dead_letter", OTHER: "dead_letter"}, 60, "the sender's view")
        assert county.received(VICTIM, mid) is None and county.received(OTHER, mid) is None
    finally:
        _fix_the_database(county)  # the cause is fixed

    result = run("hub", "dead-letters", "replay", "--home", county.hub_home, str(listed[0]["id"]))
    assert result.exit_code == 0, result.output
    county.wait_hub(mid, "delivered", [VICTIM, OTHER])
    wait_until(lambda: all(r.state == "delivered" for r in county.sent(SENDER, mid).values()), 60,
               "the sender told of both deliveries")
    # Accepted once, as the unit that sent it (not as the hub that replayed it), delivered once each.
    with county.db.read() as s:
        doc = s.get(Document, mid)
        assert doc is not None and doc.sender == SENDER and doc.doc_number == REFUSED_NUMBER
    assert county.count(Delivery, Delivery.message_id == mid) == 2
    assert len(county.audit(mid, "document.accept")) == 1
    for address in (VICTIM, OTHER):
        got = county.inbox_files(address, mid)
        assert {name: got.get(name) for name in files} == files
        assert county.receipts(mid) == 2
    assert county.count(Rejection, Rejection.message_id == mid, Rejection.code == "dead_letter_replayed") == 1
    assert county.count(Rejection, Rejection.message_id == mid, Rejection.code == "dead_letter") == 0
