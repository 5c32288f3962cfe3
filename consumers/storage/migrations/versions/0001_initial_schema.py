"""Initial schema: stories, articles, the story event log, and consumer offsets.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('consumer_offsets',
    sa.Column('consumer_group', sa.String(length=255), nullable=False),
    sa.Column('topic', sa.String(length=255), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('next_offset', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('consumer_group', 'topic', 'partition', name=op.f('pk_consumer_offsets'))
    )
    op.create_table('stories',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('match_partition', sa.Integer(), nullable=False),
    sa.Column('canonical_article_id', sa.String(length=40), nullable=False),
    sa.Column('member_count', sa.Integer(), nullable=False),
    sa.Column('outlet_count', sa.Integer(), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('merged_into', sa.String(length=40), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stories'))
    )
    op.create_index('ix_stories_updated_at', 'stories', ['updated_at'])
    op.create_index('ix_stories_match_partition', 'stories', ['match_partition'])

    op.create_table('story_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('story_id', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('article_id', sa.String(length=40), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('similarity', sa.Float(), nullable=True),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_story_events'))
    )
    op.create_index('ix_story_events_story_id', 'story_events', ['story_id'])

    op.create_table('articles',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('story_id', sa.String(length=40), nullable=False),
    sa.Column('input_id', sa.String(length=256), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('url_normalised', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=256), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('lang', sa.String(length=16), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('scraped_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('num_shingles', sa.Integer(), nullable=False),
    sa.Column('signature', sa.LargeBinary(), nullable=False),
    sa.Column('fingerprint_identity', sa.String(length=80), nullable=False),
    sa.Column('match_method', sa.String(length=16), nullable=False),
    sa.Column('similarity', sa.Float(), nullable=False),
    sa.Column('containment', sa.Float(), nullable=False),
    sa.Column('source_topic', sa.String(length=255), nullable=False),
    sa.Column('source_partition', sa.Integer(), nullable=False),
    sa.Column('source_offset', sa.BigInteger(), nullable=False),
    sa.Column('source_timestamp', sa.DateTime(timezone=True), nullable=True),
    sa.Column('match_partition', sa.Integer(), nullable=False),
    sa.Column('stored_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('extra', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['story_id'], ['stories.id'], name=op.f('fk_articles_story_id_stories')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_articles'))
    )
    op.create_index('ix_articles_content_hash', 'articles', ['content_hash'])
    op.create_index('ix_articles_input_id', 'articles', ['input_id'])
    op.create_index('ix_articles_match_partition_published_at', 'articles', ['match_partition', 'published_at'])
    op.create_index('ix_articles_story_id', 'articles', ['story_id'])



def downgrade() -> None:
    op.drop_index('ix_articles_story_id', table_name='articles')
    op.drop_index('ix_articles_match_partition_published_at', table_name='articles')
    op.drop_index('ix_articles_input_id', table_name='articles')
    op.drop_index('ix_articles_content_hash', table_name='articles')

    op.drop_table('articles')
    op.drop_index('ix_story_events_story_id', table_name='story_events')

    op.drop_table('story_events')
    op.drop_index('ix_stories_match_partition', table_name='stories')
    op.drop_index('ix_stories_updated_at', table_name='stories')

    op.drop_table('stories')
    op.drop_table('consumer_offsets')
