"""Merchants, their terminals, offers and API keys, and their settlement statements."""

# The modules other domains may import; the rest (the repository first) are this
# domain's own. `tests/architecture/test_domain_boundaries.py` holds everyone to it.
PUBLIC_MODULES = ("auth", "commands", "endpoints", "errors", "schemas", "service")
