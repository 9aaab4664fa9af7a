"""Admin tests: administrators made through the service, tokens minted with the app's key."""

from __future__ import annotations

import secrets as random_secrets
from dataclasses import dataclass

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from service import audit
from service.accounts.tokens import Keyring
from service.admin import service as admins
from service.admin.tokens import mint_admin_token
from service.models import Admin
from tests.crediting.conftest import live

__all__ = ["live"]  # the crediting tests' fixture: the real app, committing

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class SignedIn:
    admin: Admin
    headers: dict[str, str]

    @property
    def admin_actor(self) -> audit.Actor:
        """The administrator as a service function's actor (acting under their first role)."""
        return audit.Actor(self.admin.id, self.admin.login, sorted(self.admin.roles)[0], "test")


def app_keyring(app: FastAPI) -> Keyring:
    return Keyring.from_secrets(app.state.secrets.jwt_signing_key)


async def make_admin(
    app: FastAPI, session: AsyncSession, *roles: str, login: str | None = None
) -> SignedIn:
    enrolled = await admins._enrol(
        session,
        app.state.secrets.partner_secret_key,
        login=login or f"admin-{random_secrets.token_hex(4)}",
        display_name="Test administrator",
        password=PASSWORD,
        roles=list(roles),
    )
    admin = enrolled.admin
    token = mint_admin_token(app_keyring(app), admin_id=admin.id, generation=0)
    return SignedIn(admin, {"authorization": f"Bearer {token}"})
