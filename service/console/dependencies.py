"""Who is using the console, in which language, and the page renderer.

    @router.get("/admin/...")
    async def page(admin: Annotated[ConsoleAdmin, Depends(require_page(*roles))]) -> Response:

A page admits the administrators the matching API endpoint admits (`tests/console` checks
each page's roles against the API's). Roles and status are read from the database on every
request, as the API does; the session's token generation must still be the
administrator's, so a role change or a disabled account ends every console session at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import structlog
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from service import audit
from service.accounts.dependencies import keyring
from service.admin import service as admins
from service.admin.errors import RoleRequiredError
from service.console import session as sessions
from service.console.errors import ConsoleError, ConsoleLoginRequiredError, CsrfRefusedError
from service.console.navigation import menu
from service.db import DbSession
from service.errors import NotFoundError
from service.i18n import EN, catalogue, negotiate
from service.models import ADMIN_ROLES

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

_environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(("html",)),
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)


def _local(moment: datetime | None, zone: ZoneInfo) -> str:
    """An instant as the programme's local time, to the minute."""
    return "" if moment is None else moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


_environment.filters["local"] = _local
_environment.filters["hex"] = lambda value: bytes(value).hex()


def chart_json(data: Any) -> str:
    """A chart's data as JSON text, for a canvas's `data-values` attribute (the template
    escapes it like any attribute: no markup can come out of it)."""
    return orjson.dumps(data).decode()


# Content-Security-Policy: scripts and styles only from the console's own static files (no
# inline script anywhere), no framing, forms only back to the console.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    "vary": "Accept-Language, Cookie",
}


def console_language(request: Request) -> str:
    """zh-CN or English, as the browser's Accept-Language prefers (English otherwise)."""
    return negotiate(request.headers.get("accept-language"), EN)


def translator(language: str) -> Callable[..., str]:
    """`_(msgid, **params)` for templates and page code, in `language`."""
    entries = catalogue(language)

    def gettext(msgid: str, /, **params: Any) -> str:
        text = entries.get(msgid, msgid) if language != EN else msgid
        if not params:
            return text
        try:
            return text % params
        except (KeyError, ValueError, TypeError):
            return msgid % params  # a broken translation never hides the message

    return gettext


@dataclass(frozen=True, slots=True)
class ConsoleAdmin:
    admin_id: uuid.UUID
    login: str
    display_name: str
    roles: frozenset[str]
    acting_role: str
    request_id: str | None
    csrf: str
    renewed_session: str | None = field(default=None)

    @property
    def actor(self) -> audit.Actor:
        return audit.Actor(self.admin_id, self.login, self.acting_role, self.request_id)

    def may(self, roles: tuple[str, ...]) -> bool:
        return not self.roles.isdisjoint(roles)


def secure_cookies(request: Request) -> bool:
    """Secure (HTTPS only) everywhere but development, where the console runs on plain HTTP."""
    return bool(request.app.state.settings.environment != "development")


def set_session_cookie(response: HTMLResponse | Any, request: Request, token: str) -> None:
    response.set_cookie(
        sessions.COOKIE,
        token,
        max_age=int(sessions.SESSION_TTL.total_seconds()),
        path=sessions.COOKIE_PATH,
        secure=secure_cookies(request),
        httponly=True,
        samesite="strict",
    )


def _form_token(request: Request, form: Mapping[str, str]) -> str | None:
    return form.get(sessions.CSRF_FIELD) or request.headers.get(sessions.CSRF_HEADER)


def check_origin(request: Request) -> None:
    """A browser's Origin (sent with every POST) must be this host: a cross-site form never
    gets this far."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    if origin.split("://", 1)[-1] != host:
        raise ConsoleError(CsrfRefusedError("the form was sent from another site"))


def check_csrf(request: Request, admin: ConsoleAdmin, form: Mapping[str, str]) -> None:
    check_origin(request)
    if not sessions.tokens_match(admin.csrf, _form_token(request, form)):
        raise ConsoleError(CsrfRefusedError("reload the page and send the form again"))


def require_page(*allowed: str) -> Callable[..., Awaitable[ConsoleAdmin]]:
    """A dependency admitting console sessions of administrators holding one of `allowed`."""
    unknown = set(allowed) - set(ADMIN_ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")
    wanted = allowed or ADMIN_ROLES

    async def dependency(request: Request, session: DbSession) -> ConsoleAdmin:
        ring = keyring(request)
        token = request.cookies.get(sessions.COOKIE)
        found = sessions.read_session(ring, token) if token else None
        if found is None:
            raise ConsoleError(ConsoleLoginRequiredError("your session ended: log in again"))
        try:
            admin = await admins.get_admin(session, found.admin_id)
        except NotFoundError:
            raise ConsoleError(ConsoleLoginRequiredError("log in again")) from None
        if admin.status != "active" or admin.token_generation != found.generation:
            raise ConsoleError(ConsoleLoginRequiredError("your session was ended: log in again"))
        acting = next((role for role in wanted if role in admin.roles), None)
        request_id = getattr(request.state, "request_id", None)
        structlog.contextvars.bind_contextvars(admin_id=str(admin.id))
        now = datetime.now(UTC)
        renewed = (
            sessions.mint_session(
                ring,
                admin_id=admin.id,
                generation=admin.token_generation,
                now=now,
                session_id=found.session_id,
                logged_in_at=found.logged_in_at,
            )
            if found.needs_renewal(now)
            else None
        )
        console_admin = ConsoleAdmin(
            admin.id,
            admin.login,
            admin.display_name,
            frozenset(admin.roles),
            acting or "",
            request_id,
            sessions.csrf_token(ring, found.session_id),
            renewed,
        )
        if acting is None:
            request.state.console_admin = console_admin  # the refusal page shows the menu
            needed = ", ".join(wanted)
            raise ConsoleError(RoleRequiredError(f"this page needs one of the roles {needed}"))
        return console_admin

    dependency.allowed_roles = tuple(wanted)  # type: ignore[attr-defined]
    return dependency


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    admin: ConsoleAdmin | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """A page (or an htmx fragment) in the reader's language, with the console's headers and,
    when the session was renewed, its new cookie."""
    language = console_language(request)
    html = _environment.get_template(template).render(
        {
            "_": translator(language),
            "language": language,
            "admin": admin,
            "menu": menu(admin.roles) if admin is not None else [],
            "path": request.url.path,
            **context,
        }
    )
    response = HTMLResponse(html, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    response.headers["content-language"] = language
    if admin is not None and admin.renewed_session is not None:
        set_session_cookie(response, request, admin.renewed_session)
    return response
