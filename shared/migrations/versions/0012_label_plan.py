"""label plan: the topics and themes a job's label stage has to label, set once clustering is done (the job page's
labelling estimate), and an index for the label work finished last

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("topics_to_label", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("themes_to_label", sa.Integer(), nullable=True))
    # The seconds per label of the newest finished label items: read backwards along this index, a few rows.
    op.create_index("ix_work_items_stage_finished", "work_items", ["stage", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_work_items_stage_finished", table_name="work_items")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("themes_to_label")
        batch.drop_column("topics_to_label")
