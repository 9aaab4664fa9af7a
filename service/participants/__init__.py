"""Participants (citizens and small businesses): identity links, the app's reads, privacy."""

# The modules other domains may import; the rest (the repository first) are this
# domain's own. `tests/architecture/test_domain_boundaries.py` holds everyone to it.
PUBLIC_MODULES = ("endpoints", "identity_links", "privacy", "schemas", "service")
