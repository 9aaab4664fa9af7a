"""The ledger is the only code that touches its tables (issue 14).

import-linter keeps the packages' layers; it cannot see a table named in SQL text or a model
imported from `service.models`' package namespace, so this test reads the source: outside
`service/ledger/` (and the models and migrations that define the tables), no module imports
a `Ledger*` model, names a `ledger_*` table in a string, or spells a ledger account code.
Other domains use the ledger's API: `service.ledger.service` and the few SQL conditions and
code helpers its repository exports (`hold_is_live_sql`, `merchant_account_code`, ...).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "service"
OWNERS = ("ledger", "models", "migrations.py")
LEDGER_TABLE = re.compile(
    r"\bledger_(accounts|postings|transactions|lots|lot_movements|holds|hold_resolutions)\b"
)
ACCOUNT_CODE = re.compile(r":(POINTS|DEBT)\b|:settlement\b|\bprogram:(issuance|expiry)\b")


def _outside_the_ledger() -> list[Path]:
    return [
        path for path in sorted(ROOT.rglob("*.py")) if path.relative_to(ROOT).parts[0] not in OWNERS
    ]


def _violations(source: str, name: str) -> list[str]:
    tree = ast.parse(source, filename=name)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("service.models"):
            found += [
                f"imports {alias.name}" for alias in node.names if alias.name.startswith("Ledger")
            ]
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if LEDGER_TABLE.search(node.value):
                found.append(f"names a ledger table: {node.value.strip()[:60]!r}")
            if ACCOUNT_CODE.search(node.value):
                found.append(f"spells an account code: {node.value.strip()[:60]!r}")
    return [f"{name}: {message}" for message in found]


def test_no_module_outside_the_ledger_touches_its_tables() -> None:
    violations = [
        violation
        for path in _outside_the_ledger()
        for violation in _violations(path.read_text(), str(path.relative_to(ROOT.parent)))
    ]
    assert violations == []


def test_the_check_sees_a_violation() -> None:
    """The scanner itself: a module naming a ledger table and a model is caught."""
    sample = (
        "from service.models import LedgerHold\n"
        "SQL = 'SELECT 1 FROM ledger_hold_resolutions'\n"
        "CODE = f'participant:{1}:POINTS'\n"
    )
    assert len(_violations(sample, "sample.py")) == 3
