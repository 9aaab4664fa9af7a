"""The admin web console at `/admin`: server-rendered pages (Jinja2, htmx, Chart.js) over
the same services and roles as the admin API, for administrators who would rather look at a
chart than read JSON.

It owns no table: every page calls the owning domain's service (administrators' login,
the methodology lifecycle and back-test, the reports, partners and merchants, the audit
trail), and every act is recorded in the audit trail by those services.
"""

# The modules other domains may import (the app includes the router); the rest are its own.
# `tests/architecture/test_domain_boundaries.py` holds everyone to it.
PUBLIC_MODULES = ("endpoints",)
