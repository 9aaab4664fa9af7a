"""Review tests: the real app and crediting path, committing for real (no mocks)."""

from __future__ import annotations

import pytest

from service import audit
from tests.admin.conftest import SignedIn, make_admin
from tests.crediting.conftest import Live, live

__all__ = ["live"]


@pytest.fixture
async def reviewers(live: Live) -> tuple[SignedIn, SignedIn]:
    """Two active administrators with the reviewer role (the first also a program-admin)."""
    async with live.sessionmaker() as session, session.begin():
        first = await make_admin(live.app, session, "reviewer", "program-admin")
        second = await make_admin(live.app, session, "reviewer")
    return first, second


def actor(signed_in: SignedIn) -> audit.Actor:
    return audit.Actor(signed_in.admin.id, signed_in.admin.login, "reviewer", "test")
