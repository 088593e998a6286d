"""What an agent reports to Prometheus at scrape time: its outbox not yet confirmed by the
broker, received documents nobody has signed for or returned yet, and those kept until
their signer's CA is trusted here."""

from __future__ import annotations

from sqlalchemy import func, select

from docex.agent.context import AgentContext
from docex.agent.store import AwaitingTrust, Outgoing, Received
from docex.monitoring.status import SnapshotSource, StatusSnapshot


def agent_status(ctx: AgentContext) -> SnapshotSource:
    def snapshot() -> StatusSnapshot:
        with ctx.store.session() as s:
            unsent = s.execute(select(func.count()).select_from(Outgoing).where(Outgoing.sent_at.is_(None))).scalar_one()
            unsigned = s.execute(select(func.count()).select_from(Received).where(Received.state == "delivered")).scalar_one()
            awaiting = s.execute(select(func.count()).select_from(AwaitingTrust)).scalar_one()
        return StatusSnapshot(outbox_pending=unsent, inbox_unsigned=unsigned, inbox_awaiting_trust=awaiting)

    return snapshot
