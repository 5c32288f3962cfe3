"""Compact verification data (issue 14): shingle hashes in consumers/storage/codec.py's format, of each
signature only the values the LSH bands use, and ``articles.body_chars`` so that a rebuild reads no body.

Stored rows are converted in keyset pages of ``BATCH_ROWS`` (bounded memory on a table of millions of rows):
the shingle hashes re-encoded (about 20% smaller), the signature cut to its first ``BAND_VALUES`` values,
``body_chars`` filled (the rebuild reads ``length(body)`` where it is NULL, as before). Only
rows still holding verification data are touched (prune stripped the rest), so the work is the matcher's
window, not the whole table. It all runs in the upgrade's one transaction (storage.schema.upgrade): nothing
is locked but the rows converted, inserts go on, but a matcher updating one of them (a merge) waits for the
commit, so upgrade with match stopped, as for refingerprint. Readers need no conversion to be correct: the
codec reads the format before this one too, so a row written by a role still on the old build stays readable.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from consumers.storage.codec import decode_shingle_hashes, encode_shingle_hashes

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# b * r of the default settings (23 bands of 1 row), frozen here as migrations are: a matcher configured with
# more bands recomputes the missing values from the shingle hashes when it rebuilds (StoryStore.load_into).
BAND_VALUES = 23
BATCH_ROWS = 2000

articles = sa.table('articles', sa.column('id', sa.String), sa.column('signature', sa.LargeBinary),
                    sa.column('shingle_hashes', sa.LargeBinary), sa.column('body', sa.Text),
                    sa.column('body_chars', sa.Integer))


def upgrade() -> None:
    with op.batch_alter_table('articles') as batch_op:
        batch_op.add_column(sa.Column('body_chars', sa.Integer(), nullable=True))
    bind = op.get_bind()
    length = sa.func.length if bind.dialect.name == 'sqlite' else sa.func.octet_length
    legacy = sa.or_(length(articles.c.signature) > 4 * BAND_VALUES,
                    sa.and_(length(articles.c.shingle_hashes) > 0, length(articles.c.shingle_hashes) % 4 == 0))
    update = (sa.update(articles).where(articles.c.id == sa.bindparam('b_id'))
              .values(signature=sa.bindparam('b_signature'), shingle_hashes=sa.bindparam('b_hashes'),
                      body_chars=sa.func.length(articles.c.body)))
    last = ''  # article keys are hex digests: every one sorts after ''
    while True:
        rows = bind.execute(sa.select(articles.c.id, articles.c.signature, articles.c.shingle_hashes)
                            .where(articles.c.id > last, legacy).order_by(articles.c.id).limit(BATCH_ROWS)).all()
        if not rows:
            return
        bind.execute(update, [
            {'b_id': key,
             'b_signature': signature[:4 * BAND_VALUES] if signature is not None else None,
             'b_hashes': (encode_shingle_hashes(decode_shingle_hashes(hashes)) if hashes else hashes)}
            for key, signature, hashes in rows])
        last = rows[-1][0]


def downgrade() -> None:
    """Back to whole signatures and plain hashes: signatures recomputed from the shingle hashes (they are a
    function of them), under the default fingerprint settings' permutations when the row's identity is default."""
    from consumers.stages.fingerprint import FingerprintConfig, minhash_signature

    with op.batch_alter_table('articles') as batch_op:
        batch_op.drop_column('body_chars')
    bind = op.get_bind()
    config = FingerprintConfig()
    table = sa.table('articles', sa.column('id', sa.String), sa.column('signature', sa.LargeBinary),
                     sa.column('shingle_hashes', sa.LargeBinary), sa.column('fingerprint_identity', sa.String))
    update = (sa.update(table).where(table.c.id == sa.bindparam('b_id'))
              .values(signature=sa.bindparam('b_signature'), shingle_hashes=sa.bindparam('b_hashes')))
    last = ''
    while True:
        rows = bind.execute(
            sa.select(table.c.id, table.c.signature, table.c.shingle_hashes, table.c.fingerprint_identity)
            .where(table.c.id > last, table.c.shingle_hashes.is_not(None)).order_by(table.c.id).limit(BATCH_ROWS)
        ).all()
        if not rows:
            return
        changes = []
        for key, signature, hashes, row_identity in rows:
            values = decode_shingle_hashes(hashes)
            if row_identity == config.identity:
                signature = minhash_signature(values, config).astype('<u4').tobytes()
            changes.append({'b_id': key, 'b_signature': signature, 'b_hashes': values.astype('<u4').tobytes()})
        bind.execute(update, changes)
        last = rows[-1][0]
