"""Redemption: codes, two-phase redemption on the ledger's holds, offer stock, the catalogue."""

# The modules other domains may import; the rest (the repository first) are this
# domain's own. `tests/architecture/test_domain_boundaries.py` holds everyone to it.
PUBLIC_MODULES = ("commands", "endpoints", "errors", "jobs", "privacy", "schemas", "service")
