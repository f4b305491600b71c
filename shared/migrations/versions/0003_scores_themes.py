"""scores, themes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 17:50:48.757073
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('themes',
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('theme', sa.Integer(), nullable=False),
    sa.Column('label', sa.Text(), nullable=False),
    sa.Column('label_source', sa.String(length=16), nullable=False),
    sa.Column('topics', sa.JSON(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'theme')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scores', sa.JSON(), nullable=True))

    with op.batch_alter_table('topics', schema=None) as batch_op:
        batch_op.add_column(sa.Column('theme', sa.Integer(), nullable=True))




def downgrade() -> None:

    with op.batch_alter_table('topics', schema=None) as batch_op:
        batch_op.drop_column('theme')

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('scores')

    op.drop_table('themes')

