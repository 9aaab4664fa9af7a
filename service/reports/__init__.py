"""Programme reports for administrators and auditors: reductions, the points liability,
merchants' settlement totals and partners' health, as JSON and as CSV.

This package composes the owning domains' report functions (`service.ledger.service`,
`service.crediting.reports`, `service.merchants.service`, `service.partners.service`) and
never names a table itself.
"""

# The modules other domains may import; the rest (the repository first) are this
# domain's own. `tests/architecture/test_domain_boundaries.py` holds everyone to it.
PUBLIC_MODULES = ("endpoints", "schemas", "service", "spreadsheets")
