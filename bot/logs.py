"""Log lines for an operator: one format, timestamps in the bot's time zone with the offset.

``setup`` is called once by the ``gridbot`` command; ``use_timezone`` when the configuration is
read (until then the machine's local zone is used, with its offset too), so every line of a
run shows the same zone as the times the bot writes in its messages (``timezone`` in bot.yaml,
Asia/Shanghai by default). APScheduler's per-run INFO lines ("Running job …", "… executed
successfully", every 30 s) are left out: the scheduler logs what its jobs do itself.
"""

from __future__ import annotations

import logging
from datetime import datetime, tzinfo

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers that say too much for a service's journal: APScheduler two lines per run of a job;
# nio every 429 and timeout at WARNING (our own retry code reports those).
QUIET = {"apscheduler": logging.WARNING, "nio": logging.ERROR}


class ZonedFormatter(logging.Formatter):
    """``2026-03-01 08:00:00.123+08:00``: ISO 8601 in ``tz``, milliseconds and offset."""

    tz: tzinfo | None = None  # None: the machine's local time zone

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        when = datetime.fromtimestamp(record.created, self.tz)
        if when.tzinfo is None:
            when = when.astimezone()
        if datefmt:
            return when.strftime(datefmt)
        return when.isoformat(sep=" ", timespec="milliseconds")


def setup(verbose: bool = False) -> None:
    """Log to stderr at INFO (DEBUG when ``verbose``), in the format above (like
    ``logging.basicConfig``, a root logger that has handlers already keeps them)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(ZonedFormatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name, level in QUIET.items():
        logging.getLogger(name).setLevel(level)
    if not verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)


def use_timezone(tz: tzinfo) -> None:
    """From now on every ZonedFormatter writes times in ``tz`` (the configured time zone)."""
    ZonedFormatter.tz = tz
