"""topic edits (a custom label beside the generated one), keyword weights, full-text search of documents

Revision ID: 0006
Revises: 0005

Search: on SQLite an FTS5 table ``document_search`` (porter stemming), filled when a job succeeds; on
PostgreSQL a GIN index on the documents' English text vectors, kept by PostgreSQL itself.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PG_VECTOR = "to_tsvector('english', coalesce(title, '') || ' ' || text)"


def upgrade() -> None:
    with op.batch_alter_table("topics") as batch:
        batch.add_column(sa.Column("custom_label", sa.Text()))
        batch.add_column(sa.Column("keyword_weights", sa.JSON()))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_documents_search ON documents USING gin ({PG_VECTOR})")
    else:
        op.execute(
            "CREATE VIRTUAL TABLE document_search USING fts5("
            "text, title, job_id UNINDEXED, idx UNINDEXED, tokenize='porter unicode61')"
        )
        op.execute(
            "INSERT INTO document_search (text, title, job_id, idx) SELECT d.text, coalesce(d.title, ''), d.job_id, "
            "d.idx FROM documents AS d JOIN jobs AS j ON j.id = d.job_id WHERE j.status = 'succeeded'"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_documents_search")
    else:
        op.execute("DROP TABLE document_search")
    with op.batch_alter_table("topics") as batch:
        batch.drop_column("keyword_weights")
        batch.drop_column("custom_label")
