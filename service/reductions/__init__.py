"""Certified reductions (issue 18): credited grams pooled into batches with kilogram serial
numbers, split and transferred to organisations, retired once, verified, and shown in a public
registry. Owns the `reduction_*` tables; moves grams only through the ledger's API."""

# The modules other domains may import; the rest (the repository first) are this
# domain's own. `tests/architecture/test_domain_boundaries.py` holds everyone to it.
PUBLIC_MODULES = ("commands", "endpoints", "errors", "examples", "schemas", "service", "verify")
