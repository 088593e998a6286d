"""chunks of large documents (their bytes in the content store)

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('chunks',
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('idx', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('origin', sa.String(length=200), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('message_id', 'idx')
    )
    op.create_index(op.f('ix_chunks_digest'), 'chunks', ['digest'], unique=False)
    op.create_index(op.f('ix_chunks_state'), 'chunks', ['state'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_chunks_state'), table_name='chunks')
    op.drop_index(op.f('ix_chunks_digest'), table_name='chunks')
    op.drop_table('chunks')
