"""Tap to answer and edited answers: reactions the bot seeds on a question (an outbox message
annotating an earlier one), the question a conversation waits on, and the answer it last took
with the state before it (so an edit of that answer can replace it).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("annotates_event", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("annotates_txn", sa.String(length=64), nullable=True))
    op.create_index("ix_outbox_annotates_txn", "outbox", ["annotates_txn"], unique=False)
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("question_txn", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("answer_event_id", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("before", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        for col in ("before", "answer_event_id", "question_txn"):
            batch.drop_column(col)
    op.drop_index("ix_outbox_annotates_txn", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("annotates_txn")
        batch.drop_column("annotates_event")
