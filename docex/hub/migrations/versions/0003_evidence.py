"""delivery evidence issued or received by the hub

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('evidence',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.String(length=128), nullable=False),
    sa.Column('event', sa.String(length=30), nullable=False),
    sa.Column('issuer', sa.String(length=200), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('der', sa.LargeBinary(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('digest')
    )
    op.create_index(op.f('ix_evidence_message_id'), 'evidence', ['message_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_evidence_message_id'), table_name='evidence')
    op.drop_table('evidence')
