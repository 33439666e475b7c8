"""Application-service transactions received, and the lease on consuming the inbox.

``appservice_transactions``: each txnId the homeserver pushed, stored in the same transaction
as its events, so a repeated PUT is acknowledged without storing anything twice.
``runner_lease``: one row per lease name (``inbox``); the process holding it runs the
dispatcher, sender and scheduler, the others wait as hot standbys.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "appservice_transactions",
        sa.Column("txn_id", sa.String(length=255), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("txn_id"),
    )
    op.create_table(
        "runner_lease",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("runner_lease")
    op.drop_table("appservice_transactions")
