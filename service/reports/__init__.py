"""Programme reports for administrators and auditors: reductions, the points liability,
merchants' settlement totals and partners' health, as JSON and as CSV.

This package composes the owning domains' report functions (`service.ledger.service`,
`service.crediting.reports`, `service.merchants.service`, `service.partners.service`) and
never names a table itself.
"""
