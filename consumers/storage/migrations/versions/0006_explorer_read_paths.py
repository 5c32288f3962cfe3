"""Indexes for the explorer's read paths (issue 15, ``newsdedup serve``).

- ``articles.url_normalised``: the lookup by URL. On PostgreSQL a hash index: equality is the only question
  asked of it, and a hash entry is a fixed few bytes where a B-tree entry holds the whole URL (bench/pg_bytes.py
  gives its bytes per article). SQLite has only B-trees.
- ``stories``: the story list's two orders (most recent, largest) over the stories not merged away, each a
  partial index, and the stories merged into one (a story page shows their event logs too).

Building them locks writes to the tables for as long as the build takes (a few seconds per million
articles); upgrade with match stopped, as for 0005.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

LISTED = 'merged_into IS NULL'
MERGED = 'merged_into IS NOT NULL'


def upgrade() -> None:
    op.create_index('ix_articles_url_normalised', 'articles', ['url_normalised'], postgresql_using='hash')
    op.create_index('ix_stories_recent', 'stories', ['last_seen_at'], postgresql_where=sa.text(LISTED),
                    sqlite_where=sa.text(LISTED))
    op.create_index('ix_stories_largest', 'stories', ['member_count', 'last_seen_at'],
                    postgresql_where=sa.text(LISTED), sqlite_where=sa.text(LISTED))
    op.create_index('ix_stories_merged_into', 'stories', ['merged_into'], postgresql_where=sa.text(MERGED),
                    sqlite_where=sa.text(MERGED))


def downgrade() -> None:
    for name, table in (('ix_stories_merged_into', 'stories'), ('ix_stories_largest', 'stories'),
                        ('ix_stories_recent', 'stories'), ('ix_articles_url_normalised', 'articles')):
        op.drop_index(name, table_name=table)
