"""Fixtures for the points_rules tests (pure: no database, no network)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

# The venv's editable install may predate points_rules/__init__.py and then resolve the package
# as an empty namespace; make sure the checkout itself is importable first.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pytest  # noqa: E402

from points_rules import Registry, default_registry  # noqa: E402

CST = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture(scope="session")
def registry() -> Registry:
    return default_registry()
