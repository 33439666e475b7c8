"""Provisioning without aliases: a run lease, and the alias column made optional.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provision_lease",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unfinished", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # batch: SQLite cannot ALTER a column in place (Alembic copies the table).
    with op.batch_alter_table("provisioned_rooms") as batch:
        batch.alter_column("alias", existing_type=sa.String(length=255), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("provisioned_rooms") as batch:
        batch.alter_column("alias", existing_type=sa.String(length=255), nullable=False)
    op.drop_table("provision_lease")
