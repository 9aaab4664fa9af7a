"""Methodologies: the filed versions, the registry, the lifecycle and back-testing."""

# The modules other domains may import; the rest (the repository first) are this
# domain's own. `tests/architecture/test_domain_boundaries.py` holds everyone to it.
PUBLIC_MODULES = ("backtest", "errors", "lifecycle", "service")
