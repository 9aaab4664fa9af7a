"""Administrators: accounts apart from citizens, roles, TOTP login, the admin API."""

# The modules other domains may import; the rest (the repository first) are this
# domain's own. `tests/architecture/test_domain_boundaries.py` holds everyone to it.
PUBLIC_MODULES = (
    "cli",
    "dependencies",
    "endpoints",
    "errors",
    "merchants",
    "partners",
    "schemas",
    "service",
)
