"""label provenance: the prompts sent and raw answers received behind each topic's and theme's label, with the
labeller (backend, model, settings) that produced it

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("topics", "themes"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("provenance", sa.JSON(), nullable=True))


def downgrade() -> None:
    for table in ("themes", "topics"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("provenance")
