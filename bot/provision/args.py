"""Options of ``gridbot provision`` (kept apart so building the CLI parser stays cheap)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verify",
        action="store_true",
        help="read every room's state from the homeserver, even rooms the database says are "
        "up to date (repairs changes made by hand)",
    )
    parser.add_argument(
        "--reinvite",
        action="store_true",
        help="invite again people who left a room or declined the bot's invite",
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="requests in flight at once (default 8)"
    )
    parser.add_argument(
        "--plan", action="store_true", help="print the rooms the roster calls for and stop"
    )
