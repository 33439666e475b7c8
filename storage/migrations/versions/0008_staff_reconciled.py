"""Staff changes confirmed in chat remember when a roster import first agreed with them.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("staff_changes") as batch:
        batch.add_column(sa.Column("reconciled_on", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("staff_changes") as batch:
        batch.drop_column("reconciled_on")
