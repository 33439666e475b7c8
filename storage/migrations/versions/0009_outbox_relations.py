"""Outgoing messages declare their relations (reply, thread, edit) and files; the sender
resolves them when it sends.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("mimetype", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("url", sa.String(length=255), nullable=True),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_outbox_files_sha256", "outbox_files", ["sha256"], unique=False)
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("reply_to_event", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("reply_to_txn", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("thread_root_event", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("thread_root_txn", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("edit_of_event", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("edit_of_txn", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("file_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_outbox_file", "outbox_files", ["file_id"], ["id"])
    op.create_index("ix_outbox_event_id", "outbox", ["event_id"], unique=False)
    # A case post's event id is read from its outbox row; the lazily filled copy goes.
    op.drop_index("ix_case_posts_event", table_name="case_posts")
    with op.batch_alter_table("case_posts") as batch:
        batch.drop_column("event_id")


def downgrade() -> None:
    with op.batch_alter_table("case_posts") as batch:
        batch.add_column(sa.Column("event_id", sa.String(length=255), nullable=True))
    op.create_index("ix_case_posts_event", "case_posts", ["event_id"], unique=False)
    op.drop_index("ix_outbox_event_id", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint("fk_outbox_file", type_="foreignkey")
        for col in (
            "file_id",
            "edit_of_txn",
            "edit_of_event",
            "thread_root_txn",
            "thread_root_event",
            "reply_to_txn",
            "reply_to_event",
        ):
            batch.drop_column(col)
    op.drop_index("ix_outbox_files_sha256", table_name="outbox_files")
    op.drop_table("outbox_files")
