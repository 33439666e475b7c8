"""Cases: hazards, requests, accidents, their append-only audit, posts, and code counters.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "hazards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("grade", sa.String(length=8), nullable=False),
        sa.Column("category", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("interim_measures", sa.Text(), nullable=False),
        sa.Column("plan", sa.Text(), nullable=False),
        sa.Column("responsible", sa.String(length=200), nullable=False),
        sa.Column("deadline", sa.Date(), nullable=False),
        _ts("deadline_at", nullable=False),
        sa.Column("photos", sa.JSON(), nullable=False),
        sa.Column("fix_photos", sa.JSON(), nullable=False),
        sa.Column("fix_note", sa.Text(), nullable=False),
        sa.Column("rework_count", sa.Integer(), nullable=False),
        sa.Column("supervised", sa.Boolean(), nullable=False),
        sa.Column("supervised_by", sa.String(length=100), nullable=True),
        _ts("overdue_at"),
        sa.Column("reported_by", sa.String(length=255), nullable=False),
        sa.Column("reporter_name", sa.String(length=100), nullable=False),
        _ts("reported_at", nullable=False),
        sa.Column("confirmed_by", sa.String(length=100), nullable=True),
        sa.Column("verified_by", sa.String(length=100), nullable=True),
        _ts("verified_at"),
        _ts("closed_at"),
        sa.ForeignKeyConstraint(["enterprise_id"], ["enterprises.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_index("ix_hazards_open_deadline", "hazards", ["status", "deadline_at"])
    op.create_index("ix_hazards_enterprise", "hazards", ["enterprise_id"])

    op.create_table(
        "case_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        _ts("deadline_at", nullable=False),
        sa.Column("raised_by", sa.String(length=255), nullable=False),
        sa.Column("raiser_name", sa.String(length=100), nullable=False),
        _ts("raised_at", nullable=False),
        sa.Column("taken_by", sa.String(length=100), nullable=True),
        _ts("taken_at"),
        sa.Column("resolved_by", sa.String(length=100), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        _ts("resolved_at"),
        sa.Column("escalations", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["enterprise_id"], ["enterprises.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_index("ix_case_requests_open_deadline", "case_requests", ["status", "deadline_at"])
    op.create_index("ix_case_requests_enterprise", "case_requests", ["enterprise_id"])

    op.create_table(
        "accidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _ts("occurred_at", nullable=False),
        sa.Column("place", sa.Text(), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("dead", sa.Integer(), nullable=False),
        sa.Column("injured", sa.Integer(), nullable=False),
        sa.Column("missing", sa.Integer(), nullable=False),
        sa.Column("vehicles", sa.Text(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("photos", sa.JSON(), nullable=False),
        sa.Column("updates", sa.Integer(), nullable=False),
        sa.Column("reported_by", sa.String(length=255), nullable=False),
        sa.Column("reporter_name", sa.String(length=100), nullable=False),
        _ts("reported_at", nullable=False),
        sa.ForeignKeyConstraint(["enterprise_id"], ["enterprises.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_index("ix_accidents_enterprise", "accidents", ["enterprise_id"])

    op.create_table(
        "case_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("from_state", sa.String(length=32), nullable=True),
        sa.Column("to_state", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("actor_name", sa.String(length=100), nullable=False),
        sa.Column("room_id", sa.String(length=255), nullable=True),
        _ts("at", nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_case_events_code", "case_events", ["code", "id"])

    op.create_table(
        "case_posts",
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("room_id", sa.String(length=255), nullable=False),
        sa.Column("is_root", sa.Boolean(), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"]),
        sa.PrimaryKeyConstraint("outbox_id"),
    )
    op.create_index("ix_case_posts_code_room", "case_posts", ["code", "room_id"])
    op.create_index("ix_case_posts_event", "case_posts", ["event_id"])


def downgrade() -> None:
    op.drop_table("case_posts")
    op.drop_table("case_events")
    op.drop_table("accidents")
    op.drop_table("case_requests")
    op.drop_table("hazards")
