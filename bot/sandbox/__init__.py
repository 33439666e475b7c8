"""The local playground, kept apart from the runtime: a Synapse launcher (``homeserver``), the
``gridbot sandbox`` command (``demo``) and the demo county's roster (``data/``).

Nothing the bot needs to run imports this package; tests, benchmarks and the sandbox do.
"""

from __future__ import annotations

import contextlib
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

# Package data, so that a plain (non-editable) install finds it wherever it is run from.
DEMO_ROSTER: Traversable = resources.files(__name__) / "data" / "demo-county.yaml"


def demo_roster() -> contextlib.AbstractContextManager[Path]:
    """The demo roster as a real file for as long as the context lasts (the roster reader takes
    a path; a zipped install gets a temporary copy)."""
    return resources.as_file(DEMO_ROSTER)


__all__ = ["DEMO_ROSTER", "demo_roster"]
