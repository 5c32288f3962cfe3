"""Fewer bytes per article, and room for retention (issue 14).

- ``articles.signature`` may be NULL: ``newsdedup db prune`` drops the verification data (signature and
  shingle hashes) of articles whose story left the matcher's window; text and provenance stay.
- Three indexes of ``articles`` no query uses are dropped (input_id, content_hash, (match_partition,
  published_at)): 188 of 4,545 bytes per dev article, and every insert maintained them. Lookups by id and by
  story_id keep their indexes.
- ``stories.stripped_at``: when prune dropped the verification data of the story's articles; a partial index
  holds the stories still to strip, so a daily prune never reads every story past the window again.
- ``stories.created_at`` gets an index: the growth metrics read the oldest stored story's creation, the
  arrival of the oldest stored article, without a scan.
- PostgreSQL only: signature and shingle hashes are random bytes that never compress, so they are stored
  EXTERNAL (no compression attempt on every write). The text keeps pglz: lz4 was measured 10% larger on
  real-length news (bench/pg_bytes.py).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

DROPPED = {
    'ix_articles_content_hash': ['content_hash'],
    'ix_articles_input_id': ['input_id'],
    'ix_articles_match_partition_published_at': ['match_partition', 'published_at'],
}
INCOMPRESSIBLE = ('signature', 'shingle_hashes')
STRIP_PENDING = 'stripped_at IS NULL OR stripped_at < updated_at'


def upgrade() -> None:
    with op.batch_alter_table('articles') as batch_op:
        batch_op.alter_column('signature', existing_type=sa.LargeBinary(), nullable=True)
        for name in DROPPED:
            batch_op.drop_index(name)
    with op.batch_alter_table('stories') as batch_op:
        batch_op.add_column(sa.Column('stripped_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_stories_created_at', 'stories', ['created_at'])
    op.create_index('ix_stories_strip_pending', 'stories', ['updated_at'], postgresql_where=sa.text(STRIP_PENDING),
                    sqlite_where=sa.text(STRIP_PENDING))
    if op.get_bind().dialect.name == 'postgresql':
        for column in INCOMPRESSIBLE:  # identifiers from the constant above only
            op.execute(f'ALTER TABLE articles ALTER COLUMN {column} SET STORAGE EXTERNAL')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for column in INCOMPRESSIBLE:
            op.execute(f'ALTER TABLE articles ALTER COLUMN {column} SET STORAGE EXTENDED')
    op.drop_index('ix_stories_created_at', table_name='stories')
    op.drop_index('ix_stories_strip_pending', table_name='stories')
    with op.batch_alter_table('stories') as batch_op:
        batch_op.drop_column('stripped_at')
    # Rows prune stripped have no signature: NOT NULL cannot come back while they exist.
    op.execute('UPDATE articles SET signature = ' + ("''::bytea" if op.get_bind().dialect.name == 'postgresql'
                                                     else "X''") + ' WHERE signature IS NULL')
    with op.batch_alter_table('articles') as batch_op:
        batch_op.alter_column('signature', existing_type=sa.LargeBinary(), nullable=False)
        for name, columns in DROPPED.items():
            batch_op.create_index(name, columns)
