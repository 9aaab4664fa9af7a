"""Accounts and authentication for the app API: users, organisations, tokens.

Other domains use `service.accounts.dependencies.CurrentUser`, and the leaderboard filters on
`member_participant_ids` (a statement over this domain's tables that it never runs alone).
"""

from service.accounts.repository import member_participant_ids

__all__ = ["member_participant_ids"]

# The modules other domains may import; the rest (the repository first) are this
# domain's own. `tests/architecture/test_domain_boundaries.py` holds everyone to it.
PUBLIC_MODULES = (
    "dependencies",
    "endpoints",
    "errors",
    "passwords",
    "privacy",
    "schemas",
    "service",
    "throttle",
    "tokens",
)
