"""A notice's delivery is read from the outbox: the copies a delivery-check job kept go.

Whether a notice message was sent (and with which event id) is its outbox row's status and
event id; a reaction finds its notice through ix_outbox_event_id. A target's delivery state is
its post's outbox status, or "no room" when it has no room.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Plain columns, dropped and added in place (SQLite 3.35+ can): recreating notice_targets the
# batch way would trip the foreign keys of notice_deliveries and notice_feedback on its rows.
IN_PLACE = "never"


def upgrade() -> None:
    op.drop_index("ix_notice_deliveries_event_id", table_name="notice_deliveries")
    with op.batch_alter_table("notice_deliveries", recreate=IN_PLACE) as batch:
        batch.drop_column("event_id")
        batch.drop_column("status")
    with op.batch_alter_table("notice_targets", recreate=IN_PLACE) as batch:
        batch.drop_column("delivery")
        batch.drop_column("delivered_at")
        batch.drop_column("delivery_error")


def downgrade() -> None:
    with op.batch_alter_table("notice_targets", recreate=IN_PLACE) as batch:
        batch.add_column(
            sa.Column("delivery", sa.String(length=16), nullable=False, server_default="pending")
        )
        batch.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("delivery_error", sa.Text(), nullable=True))
    with op.batch_alter_table("notice_deliveries", recreate=IN_PLACE) as batch:
        batch.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default="pending")
        )
        batch.add_column(sa.Column("event_id", sa.String(length=255), nullable=True))
    op.create_index("ix_notice_deliveries_event_id", "notice_deliveries", ["event_id"])
    # Fill the copies again from the outbox, as the delivery check would have.
    op.execute(
        "UPDATE notice_deliveries SET"
        " status = (SELECT o.status FROM outbox o WHERE o.id = notice_deliveries.outbox_id),"
        " event_id = (SELECT o.event_id FROM outbox o WHERE o.id = notice_deliveries.outbox_id)"
    )
    post = (
        "SELECT o.{column} FROM notice_deliveries d JOIN outbox o ON o.id = d.outbox_id"
        " WHERE d.target_id = notice_targets.id AND d.part = 'post'"
    )
    op.execute(
        "UPDATE notice_targets SET"
        f" delivery = COALESCE(({post.format(column='status')}), 'pending'),"
        f" delivered_at = ({post.format(column='sent_at')}),"
        f" delivery_error = ({post.format(column='last_error')} AND o.status = 'failed')"
        " WHERE room_id IS NOT NULL"
    )
    op.execute("UPDATE notice_targets SET delivery = 'no_room' WHERE room_id IS NULL")
