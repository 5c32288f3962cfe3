"""The story event log becomes an outbox: each event names its match partition, and event_relay holds how
far the relay has published each partition's events to stories.events (issue 12).

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
    with op.batch_alter_table('story_events') as batch_op:
        batch_op.add_column(sa.Column('match_partition', sa.Integer(), nullable=True))
    # Older events inherit their story's partition (a story never changes partition).
    op.execute('UPDATE story_events SET match_partition = (SELECT stories.match_partition FROM stories '
               'WHERE stories.id = story_events.story_id)')
    op.execute('UPDATE story_events SET match_partition = 0 WHERE match_partition IS NULL')
    with op.batch_alter_table('story_events') as batch_op:
        batch_op.alter_column('match_partition', existing_type=sa.Integer(), nullable=False)
        batch_op.create_index('ix_story_events_match_partition_id', ['match_partition', 'id'])
    op.create_table('event_relay',
    sa.Column('match_partition', sa.Integer(), nullable=False),
    sa.Column('published_id', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('match_partition', name=op.f('pk_event_relay'))
    )
    # Events stored before this revision were published after their commit by the matcher itself (at most
    # once): the relay starts after them instead of sending the whole history again.
    op.execute('INSERT INTO event_relay (match_partition, published_id, updated_at) '
               'SELECT match_partition, max(id), CURRENT_TIMESTAMP FROM story_events GROUP BY match_partition')


def downgrade() -> None:
    op.drop_table('event_relay')
    with op.batch_alter_table('story_events') as batch_op:
        batch_op.drop_index('ix_story_events_match_partition_id')
        batch_op.drop_column('match_partition')
