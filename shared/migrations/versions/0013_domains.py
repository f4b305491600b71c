"""domains: a third level above the themes (with 8 themes or more), and each theme's domain

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "domains",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("domain", sa.Integer(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("label_source", sa.String(length=16), nullable=False),
        sa.Column("themes", sa.JSON(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("provenance", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "domain"),
    )
    with op.batch_alter_table("themes") as batch:
        batch.add_column(sa.Column("domain", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("themes") as batch:
        batch.drop_column("domain")
    op.drop_table("domains")
