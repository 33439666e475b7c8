"""Feature packages, one folder per capability: basics, notices, cases, visits, staff, contacts.

:func:`feature_modules` finds and imports every module below ``handlers/``; the app collects
the commands, conversations, scheduled jobs, planners and ``EVENT_HOOKS`` they declare. So a new
capability is a module (or a package) here and nothing else: no list to add it to.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def feature_modules() -> tuple[ModuleType, ...]:
    """Every module of every feature package, in name order (so the app's order is stable)."""
    return tuple(
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(__path__, prefix=f"{__name__}.")
    )
