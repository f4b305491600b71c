"""work items (stages and chunks on queues), job priority, one active re-label run per job

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ACTIVE = sa.text("status IN ('queued', 'running')")


def upgrade() -> None:
    op.create_table(
        "work_items",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("queue", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("seconds", sa.Float()),
        sa.Column("worker", sa.String(200)),
        sa.Column("token", sa.String(36)),
        sa.Column("deaths", sa.Integer(), server_default="0", nullable=False),
        sa.UniqueConstraint("job_id", "stage", "chunk", name="uq_work_items_job_stage_chunk"),
    )
    op.create_index("ix_work_items_job_id", "work_items", ["job_id"])
    op.create_index("ix_work_items_queue_status", "work_items", ["queue", "status"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("embedding_key", sa.String(200)))
    # Older releases could queue two re-label runs of one job at once: keep the newest of each job active.
    op.execute(
        "UPDATE label_runs SET status = 'failed', error = 'superseded by a newer re-label run' "
        "WHERE status IN ('queued', 'running') AND EXISTS (SELECT 1 FROM label_runs AS newer "
        "WHERE newer.job_id = label_runs.job_id AND newer.status IN ('queued', 'running') "
        "AND newer.created_at > label_runs.created_at)"
    )
    op.create_index("uq_label_runs_one_active", "label_runs", ["job_id"], unique=True,
                    sqlite_where=ACTIVE, postgresql_where=ACTIVE)
    # A job queued or running under the one-task design gets a plan: it starts again from its first stage.
    op.execute(
        "INSERT INTO work_items (job_id, stage, chunk, queue, status, ready_at, deaths) "
        "SELECT id, 'embed', 0, 'gpu', 'ready', CURRENT_TIMESTAMP, 0 FROM jobs WHERE status IN ('queued', 'running')"
    )
    op.execute("UPDATE jobs SET status = 'queued', stage = 'queued', progress = 0 WHERE status = 'running'")


def downgrade() -> None:
    op.drop_index("uq_label_runs_one_active", table_name="label_runs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("embedding_key")
        batch.drop_column("priority")
    op.drop_table("work_items")
