"""envelopes move to the content store on disk; documents record when retention purged them

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The `envelopes` table stays for rows written before: the hub reads them as a fallback
    # and moves them to HUBDIR/content (docex.hub.content_store.adopt_legacy).
    with op.batch_alter_table('documents') as batch:
        batch.add_column(sa.Column('content_purged_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('documents') as batch:
        batch.drop_column('content_purged_at')
