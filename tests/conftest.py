"""Shared fixtures, and the markers that split the suite by whether it needs a homeserver."""

from __future__ import annotations

import pytest
from hypothesis import settings

# Property tests are derandomized (CI sees the same examples every run: a failure is a bug, not
# luck) and keep no example database in the checkout.
settings.register_profile("gridbot", derandomize=True, database=None, deadline=None)
settings.load_profile("gridbot")

pytest_plugins = ["tests.fixtures_db", "tests.fixtures_synapse", "tests.bot_harness"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test ``homeserver`` or ``no_homeserver`` (``pytest -m no_homeserver`` runs the
    quick ones). A test's fixture closure includes fixtures used through other fixtures, so
    ``gridbot`` or ``nio_client`` count as using ``synapse``. A test that starts a homeserver of
    its own marks itself ``homeserver``."""
    for item in items:
        if item.get_closest_marker("homeserver"):
            continue
        if "synapse" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.homeserver)
        else:
            item.add_marker(pytest.mark.no_homeserver)
