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


# --- each domain's public API: the modules its `__init__` names in PUBLIC_MODULES -------------


def _public_modules() -> dict[str, set[str]]:
    """Each domain package's PUBLIC_MODULES, read from its `__init__` without importing it."""
    found: dict[str, set[str]] = {}
    for init in sorted(ROOT.glob("*/__init__.py")):
        for node in ast.parse(init.read_text()).body:
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "PUBLIC_MODULES"
            ):
                found[init.parent.name] = set(ast.literal_eval(node.value))
    return found


def _reaches_into(source: str, owner: str | None, public: dict[str, set[str]]) -> list[str]:
    """Imports of another domain's module that its PUBLIC_MODULES does not name."""
    wrong = []
    for node in ast.walk(ast.parse(source)):
        modules: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
            # `from service.ledger import repository` names a module too
            modules += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        for module in modules:
            parts = module.split(".")
            if len(parts) < 3 or parts[0] != "service" or parts[1] == owner:
                continue
            domain, name = parts[1], parts[2]
            if (
                domain in public
                and name not in public[domain]
                and ((ROOT / domain / f"{name}.py").exists() or (ROOT / domain / name).is_dir())
            ):
                wrong.append(f"service.{domain}.{name}")
    return wrong


def test_domains_import_each_other_only_through_their_public_modules() -> None:
    public = _public_modules()
    assert {"ledger", "redemption", "merchants", "crediting", "partners"} <= set(public)
    violations = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        owner = parts[0] if len(parts) > 1 else None
        for module in _reaches_into(path.read_text(), owner, public):
            violations.append(f"{path.relative_to(ROOT.parent)} imports {module}")
    assert violations == []


def test_the_public_module_check_sees_a_private_import() -> None:
    public = {"ledger": {"service"}}
    sample = "from service.ledger import repository\nfrom service.ledger.service import credit\n"
    assert _reaches_into(sample, "redemption", public) == ["service.ledger.repository"]
    assert _reaches_into(sample, "ledger", public) == []


# --- every table has one owner: no other code names it in SQL or queries its model ------------

TABLE_OWNERS = {
    "admin_audit_log": "audit",
    "admins": "admin",
    "cap_usage": "crediting",
    "credits": "crediting",
    "identity_links": "crediting",
    "partner_events": "crediting",
    "idempotency_keys": "idempotency",
    "ledger_accounts": "ledger",
    "ledger_hold_resolutions": "ledger",
    "ledger_holds": "ledger",
    "ledger_lot_movements": "ledger",
    "ledger_lots": "ledger",
    "ledger_postings": "ledger",
    "ledger_transactions": "ledger",
    "ledger_pooled_credits": "ledger",
    "merchant_api_keys": "merchants",
    "merchant_terminals": "merchants",
    "merchants": "merchants",
    "offers": "merchants",
    "methodology_drafts": "methodologies",
    "methodology_versions": "methodologies",
    "organisation_members": "accounts",
    "organisations": "accounts",
    "refresh_tokens": "accounts",
    "users": "accounts",
    "participants": "participants",
    "partner_token_uses": "participants",
    "partner_credentials": "partners",
    "partners": "partners",
    "reduction_pools": "reductions",
    "reduction_batches": "reductions",
    "reduction_batch_credits": "reductions",
    "reduction_holders": "reductions",
    "reduction_blocks": "reductions",
    "reduction_retirements": "reductions",
    "redemption_tokens": "redemption",
    "redemptions": "redemption",
    "review_flags": "review",
    "review_rules": "review",
    "webhook_attempts": "webhooks",
    "webhook_endpoints": "webhooks",
    "webhook_messages": "webhooks",
}
# `service/fields.py` reads column lengths off the models: the one place a schema's limits
# come from. It queries nothing.
SHARED_LIMITS = {"fields.py"}
SQL_TABLE = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+([a-z_]+)\b")


def _model_tables() -> dict[str, str]:
    """Model class name -> its table, read from `service/models/` without importing it."""
    found = {}
    for path in sorted((ROOT / "models").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.ClassDef):
                continue
            for item in node.body:
                if (
                    isinstance(item, ast.Assign)
                    and isinstance(item.targets[0], ast.Name)
                    and item.targets[0].id == "__tablename__"
                    and isinstance(item.value, ast.Constant)
                ):
                    found[node.name] = str(item.value.value)
    return found


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """The ids of every node inside an annotation (a type is not a query)."""
    inside: set[int] = set()
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.returns is not None:
                roots.append(node.returns)
            arguments = node.args
            for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
                if arg.annotation is not None:
                    roots.append(arg.annotation)
    for root in roots:
        inside.update(id(child) for child in ast.walk(root))
    return inside


def _foreign_tables(source: str, owner: str | None, models: dict[str, str]) -> list[str]:
    """Other domains' tables this module names in SQL, or whose models it uses as more than a
    type."""
    tree = ast.parse(source)
    found = []
    foreign_models = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("service.models"):
            for alias in node.names:
                table = models.get(alias.name)
                if table is not None and TABLE_OWNERS.get(table) != owner:
                    foreign_models[alias.asname or alias.name] = table
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for match in SQL_TABLE.finditer(node.value):
                table = match.group(1)
                if table in TABLE_OWNERS and TABLE_OWNERS[table] != owner:
                    found.append(f"names {table} ({TABLE_OWNERS[table]}'s) in SQL")
    annotations = _annotation_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in foreign_models and id(node) not in annotations:
            table = foreign_models[node.id]
            found.append(f"queries {node.id} ({TABLE_OWNERS[table]}'s {table})")
    return sorted(set(found))


def test_every_table_is_touched_only_by_its_owner() -> None:
    models = _model_tables()
    assert set(models.values()) == set(TABLE_OWNERS), "a table without an owner here"
    violations = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if parts[0] in ("models", "migrations.py") or parts[0] in SHARED_LIMITS:
            continue
        owner = parts[0] if len(parts) > 1 else None
        for message in _foreign_tables(path.read_text(), owner, models):
            violations.append(f"{path.relative_to(ROOT.parent)} {message}")
    assert violations == []


def test_the_owner_check_sees_a_foreign_table() -> None:
    models = {"Credit": "credits", "Participant": "participants"}
    sample = (
        "from service.models import Credit, Participant\n"
        "def rank(p: Participant) -> Credit:\n"
        "    return select(Credit.grams)\n"
        "SQL = 'SELECT 1 FROM participants JOIN credits ON true'\n"
    )
    assert _foreign_tables(sample, "participants", models) == [
        "names credits (crediting's) in SQL",
        "queries Credit (crediting's credits)",
    ]
    assert _foreign_tables(sample, "crediting", models) == [
        "names participants (participants's) in SQL"
    ]
