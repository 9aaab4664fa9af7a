"""Merchants, their terminals, offers and API keys, and their settlement statements.

The redemption domain takes offer stock in the till's own statements: it embeds the offers
SQL exported here (`OFFER_TERMS_SQL`, `LOCK_OFFER_SQL`), as it embeds the ledger's and the
webhooks' conditions, and reads the catalogue through `offers_on_sale`.
"""

from service.merchants.repository import LOCK_OFFER_SQL, OFFER_TERMS_SQL, offers_on_sale

__all__ = ["LOCK_OFFER_SQL", "OFFER_TERMS_SQL", "offers_on_sale"]

# The modules other domains may import; the rest (the repository first) are this
# domain's own. `tests/architecture/test_domain_boundaries.py` holds everyone to it.
PUBLIC_MODULES = ("auth", "commands", "endpoints", "errors", "schemas", "service")
