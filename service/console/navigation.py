"""The console's pages, the roles each admits (those of the API endpoints it stands for),
and the menu an administrator sees: only the pages their roles open."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from service.i18n import N_

# Each set is the API's for the same data: GET /v1/admin/reports/* (dashboard, reports),
# /v1/admin/methodology-drafts (read, back-test), POST .../methodology-drafts (author),
# .../approve and .../schedule (approver), /v1/admin/partners and /merchants (read),
# their suspend and reinstate (program-admin), /v1/admin/audit (auditor),
# GET /v1/admin/review/flags (read the queue) and its assign, approve and reject (reviewer).
REPORT_READERS: Final = ("auditor", "program-admin")
METHODOLOGY_READERS: Final = (
    "methodology-author",
    "methodology-approver",
    "auditor",
    "program-admin",
)
METHODOLOGY_AUTHORS: Final = ("methodology-author",)
METHODOLOGY_APPROVERS: Final = ("methodology-approver",)
ORGANISATION_READERS: Final = ("program-admin", "auditor")
ORGANISATION_ADMINS: Final = ("program-admin",)
AUDITORS: Final = ("auditor",)
REVIEW_READERS: Final = ("reviewer", "program-admin", "auditor")
REVIEWERS: Final = ("reviewer",)


@dataclass(frozen=True, slots=True)
class MenuItem:
    path: str
    label: str  # a msgid: the template translates it
    roles: tuple[str, ...]


PAGES: Final = (
    MenuItem("/admin/dashboard", N_("Dashboard"), REPORT_READERS),
    MenuItem("/admin/methodologies", N_("Methodologies"), METHODOLOGY_READERS),
    MenuItem("/admin/review", N_("Review queue"), REVIEW_READERS),
    MenuItem("/admin/organisations", N_("Partners and merchants"), ORGANISATION_READERS),
    MenuItem("/admin/reports", N_("Reports"), REPORT_READERS),
    MenuItem("/admin/audit", N_("Audit log"), AUDITORS),
)


# Words the templates translate from data: organisations' statuses, flags' statuses.
STATUS_WORDS: Final = (
    N_("active"),
    N_("suspended"),
    N_("open"),
    N_("approved"),
    N_("rejected"),
)


def menu(roles: frozenset[str]) -> list[MenuItem]:
    """The pages an administrator with `roles` may open, in the menu's order."""
    return [item for item in PAGES if not roles.isdisjoint(item.roles)]


def landing(roles: frozenset[str]) -> str | None:
    """The first page the administrator may open (None: their roles open no page yet)."""
    items = menu(roles)
    return items[0].path if items else None
