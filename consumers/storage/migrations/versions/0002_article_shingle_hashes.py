"""Articles keep their shingle hashes, so a rebuilt matcher verifies candidates exactly.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows stored before this revision have none (NULL): a rebuilt matcher treats them as empty
    # sets, which verify against nothing, so new copies of those old articles found new stories.
    with op.batch_alter_table('articles') as batch_op:
        batch_op.add_column(sa.Column('shingle_hashes', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('articles') as batch_op:
        batch_op.drop_column('shingle_hashes')
