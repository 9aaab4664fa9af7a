"""Partners: the systems that push verified actions, and their signing keys."""

# The modules other domains may import; the rest (the repository first) are this
# domain's own. `tests/architecture/test_domain_boundaries.py` holds everyone to it.
PUBLIC_MODULES = ("auth", "commands", "credentials", "errors", "service")
