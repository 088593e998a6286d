"""chunks held before their envelope, every copy kept until the envelope decides

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('held_chunks',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('idx', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('origin', sa.String(length=200), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_held_chunks_message_id'), 'held_chunks', ['message_id'], unique=False)
    op.create_index(op.f('ix_held_chunks_digest'), 'held_chunks', ['digest'], unique=False)
    op.create_index(op.f('ix_held_chunks_received_at'), 'held_chunks', ['received_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_held_chunks_received_at'), table_name='held_chunks')
    op.drop_index(op.f('ix_held_chunks_digest'), table_name='held_chunks')
    op.drop_index(op.f('ix_held_chunks_message_id'), table_name='held_chunks')
    op.drop_table('held_chunks')
