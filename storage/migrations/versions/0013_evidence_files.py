"""Voice notes and files kept as evidence on visits and cases.

``files`` (JSON list of bot.evidence items: msgtype m.audio or m.file, mxc url, name, info) on
``visits``, ``hazards`` (and ``fix_files`` for the rectification) and ``accidents``, beside the
photos, which stay where they were. Rows already there get an empty list.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

COLUMNS = {
    "visits": ("files",),
    "hazards": ("files", "fix_files"),
    "accidents": ("files",),
}


def upgrade() -> None:
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.add_column(
                    sa.Column(column, sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
                )


def downgrade() -> None:
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for column in reversed(columns):
                batch.drop_column(column)
