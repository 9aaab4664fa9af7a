"""Crediting: partners' events judged under the methodologies and credited to the ledger,
exactly once."""

# The modules other domains may import; the rest (the repository first) are this
# domain's own. `tests/architecture/test_domain_boundaries.py` holds everyone to it.
PUBLIC_MODULES = (
    "commands",
    "dependencies",
    "endpoints",
    "flags",
    "group_commit",
    "identity",
    "privacy",
    "reads",
    "reports",
    "schemas",
    "service",
    "vouchers",
)
