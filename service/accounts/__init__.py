"""Accounts and authentication for the app API: users, organisations, tokens.

Other domains use `service.accounts.dependencies.CurrentUser`.
"""

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
