"""Fixtures for the points_rules tests (pure: no database, no network)."""

from __future__ import annotations

import datetime as dt

import pytest

from points_rules import Registry, default_registry

CST = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture(scope="session")
def registry() -> Registry:
    return default_registry()
