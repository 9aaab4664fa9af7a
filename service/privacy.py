"""What one domain's export and erasure of a person cover (PIPL).

Each domain that holds rows about a person declares a `PRIVACY_TABLES` next to its
`export_*` and `erase_*` functions; `service.participants.privacy` asks them all, and
`tests/participants/test_privacy_coverage.py` checks the declarations against every table
that holds rows about a person, so a new table cannot be forgotten.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PrivacyTables:
    # table -> the export document's section its rows go to
    exported: Mapping[str, str]
    # the tables erasure deletes the person's rows from, or overwrites them in; the others
    # are kept, under the participant id as a pseudonym
    erased: frozenset[str] = frozenset()
