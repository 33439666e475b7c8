"""Files the bot sends into encrypted rooms: the encrypted upload of the same bytes.

``encrypted`` (JSON, nullable) on ``outbox_files``: the ``file`` object of an encrypted room's
message (mxc url of the ciphertext, key, iv, hashes), kept beside the plaintext upload's ``url``
and reused by every encrypted room that gets the same bytes.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_files") as batch:
        batch.add_column(sa.Column("encrypted", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox_files") as batch:
        batch.drop_column("encrypted")
