"""Optional enterprise coordinates and the point a visit was shared from.

Enterprises get latitude/longitude (the roster's 经度/纬度); a visit keeps the location the
member shared (latitude, longitude, the phone's accuracy) and its distance to the enterprise.
All nullable: nothing known before this revision is invented.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# Plain nullable columns, added and dropped in place: recreating enterprises or visits the
# batch way would trip the foreign keys that point at them.
IN_PLACE = "never"
VISIT_COLUMNS = ("latitude", "longitude", "accuracy_m", "distance_m")


def upgrade() -> None:
    with op.batch_alter_table("enterprises", recreate=IN_PLACE) as batch:
        batch.add_column(sa.Column("latitude", sa.Float(), nullable=True))
        batch.add_column(sa.Column("longitude", sa.Float(), nullable=True))
    with op.batch_alter_table("visits", recreate=IN_PLACE) as batch:
        for name in VISIT_COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("visits", recreate=IN_PLACE) as batch:
        for name in reversed(VISIT_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("enterprises", recreate=IN_PLACE) as batch:
        batch.drop_column("longitude")
        batch.drop_column("latitude")
