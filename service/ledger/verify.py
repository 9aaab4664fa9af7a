"""`carbon-points ledger verify`: recompute every materialised number from the facts.

Runs in one REPEATABLE READ, read-only snapshot, so a live ledger verifies
consistently while writers go on. Rows are streamed through server-side cursors;
the verifier's memory does not grow with the ledger (it keeps one account's
chain state at a time and at most `max_violations` findings).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.ledger.chain import ZERO_HASH, link, posting_digest, transaction_digest


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.invariant}] {self.where}: {self.detail}"


@dataclass(slots=True)
class VerifyReport:
    transactions: int = 0
    postings: int = 0
    accounts: int = 0
    lots: int = 0
    violations: list[Violation] = field(default_factory=list)
    truncated: bool = False
    # account id -> (sequence, hash hex) of each chain's head, for a checkpoint file.
    heads: dict[int, tuple[int, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations


_UNBALANCED = text(
    """
    SELECT transaction_id, asset, sum(amount) AS total FROM ledger_postings
    GROUP BY transaction_id, asset HAVING sum(amount) <> 0 ORDER BY transaction_id
    """
)
_TOO_FEW_POSTINGS = text(
    """
    SELECT t.id, count(p.id) AS n FROM ledger_transactions t
    LEFT JOIN ledger_postings p ON p.transaction_id = t.id
    GROUP BY t.id HAVING count(p.id) < 2 ORDER BY t.id
    """
)
# One pass over each table, merged by account id: no per-account rescans.
_ACCOUNTS = text(
    """
    SELECT a.id, a.code, a.kind, a.asset, a.bounded, a.posted, a.held,
        coalesce(p.total, 0) AS postings_sum,
        coalesce(h.total, 0) AS open_holds,
        coalesce(l.total, 0) AS lots_sum
    FROM ledger_accounts a
    LEFT JOIN (SELECT account_id, sum(amount) AS total FROM ledger_postings
               GROUP BY account_id) p ON p.account_id = a.id
    LEFT JOIN (SELECT h.account_id, sum(h.amount) AS total FROM ledger_holds h
               WHERE NOT EXISTS (SELECT 1 FROM ledger_hold_resolutions r WHERE r.hold_id = h.id)
               GROUP BY h.account_id) h ON h.account_id = a.id
    LEFT JOIN (SELECT account_id, sum(remaining) AS total FROM ledger_lots
               GROUP BY account_id) l ON l.account_id = a.id
    ORDER BY a.id
    """
)
# A lot's amount, owner and expiry must be what its credit transaction (hashed into
# the chain) says: the amount is the points credited less the debt they paid.
_LOT_FACTS = text(
    """
    SELECT l.id, l.amount, l.expires_at, l.account_id, a.code,
        (t.request ->> 'points')::bigint AS points,
        (t.request ->> 'expires_at')::timestamptz AS credit_expires_at,
        t.request ->> 'participant_id' AS participant_id,
        coalesce((SELECT -sum(p.amount) FROM ledger_postings p
                  JOIN ledger_accounts d ON d.id = p.account_id
                  WHERE p.transaction_id = t.id AND d.asset = 'DEBT' AND d.kind = 'participant'),
                 0) AS debt_paid
    FROM ledger_lots l
    JOIN ledger_transactions t ON t.id = l.transaction_id
    JOIN ledger_accounts a ON a.id = l.account_id
    ORDER BY l.id
    """
)
_LOTS = text(
    """
    SELECT l.id, l.account_id, l.amount, l.remaining, coalesce(sum(m.amount), 0) AS moved
    FROM ledger_lots l LEFT JOIN ledger_lot_movements m ON m.lot_id = l.id
    GROUP BY l.id HAVING l.remaining <> coalesce(sum(m.amount), 0) ORDER BY l.id
    """
)
_CHAIN = text(
    """
    SELECT p.id, p.account_id, p.account_seq, p.asset, p.amount, p.chain_hash,
        t.id AS tx_id, t.origin, t.idempotency_key, t.kind, t.request, t.created_at,
        a.chain_seq AS head_seq, a.chain_hash AS head_hash
    FROM ledger_postings p
    JOIN ledger_transactions t ON t.id = p.transaction_id
    JOIN ledger_accounts a ON a.id = p.account_id
    ORDER BY p.account_id, p.account_seq
    """
)
_HEADS_WITHOUT_POSTINGS = text(
    """
    SELECT a.id, a.code, a.chain_seq FROM ledger_accounts a
    WHERE a.chain_seq > 0
      AND NOT EXISTS (SELECT 1 FROM ledger_postings p WHERE p.account_id = a.id)
    ORDER BY a.id
    """
)
_COUNTS = text(
    "SELECT (SELECT count(*) FROM ledger_transactions), (SELECT count(*) FROM ledger_postings),"
    " (SELECT count(*) FROM ledger_lots)"
)


async def _stream(conn: AsyncConnection, query: Any) -> AsyncIterator[Any]:
    result = await conn.stream(query.execution_options(yield_per=1000))
    async for row in result:
        yield row


Checkpoint = dict[int, tuple[int, str]]


Progress = Callable[[int, int | None], None]
_PROGRESS_EVERY = 1000  # rows between two progress reports


async def verify_ledger(
    engine: AsyncEngine,
    *,
    max_violations: int = 100,
    checkpoint: Checkpoint | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Check invariants 1-3 and 7 over the whole ledger; name every offending row.

    A chain kept inside the database cannot, alone, reveal a rewrite of its newest
    rows together with the heads. `checkpoint` closes that gap: heads published
    earlier (`report.heads`, kept outside the database) must still be in the chain.

    `progress` hears (rows checked, rows to check) as the lots and the postings' chains,
    the long part, are streamed.
    """
    report = VerifyReport()
    checked = 0

    def tick() -> None:
        nonlocal checked
        checked += 1
        if progress is not None and checked % _PROGRESS_EVERY == 0:
            progress(checked, report.lots + report.postings)

    def found(invariant: str, where: str, detail: str) -> None:
        if len(report.violations) < max_violations:
            report.violations.append(Violation(invariant, where, detail))
        else:
            report.truncated = True

    async with engine.connect() as raw:
        conn = await raw.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            await conn.execute(text("SET TRANSACTION READ ONLY"))
            counts = (await conn.execute(_COUNTS)).one()
            report.transactions, report.postings, report.lots = (int(c) for c in counts)

            async for row in _stream(conn, _UNBALANCED):
                found(
                    "1 postings sum to zero",
                    f"ledger_transactions id={row.transaction_id}",
                    f"{row.asset} postings sum to {row.total}",
                )
            async for row in _stream(conn, _TOO_FEW_POSTINGS):
                found(
                    "1 postings sum to zero",
                    f"ledger_transactions id={row.id}",
                    f"has {row.n} posting(s); at least two are required",
                )

            async for row in _stream(conn, _ACCOUNTS):
                report.accounts += 1
                where = f"ledger_accounts id={row.id} ({row.code})"
                if row.posted != row.postings_sum:
                    found(
                        "3 balance = postings",
                        where,
                        f"posted {row.posted}, postings sum {row.postings_sum}",
                    )
                if row.held != row.open_holds:
                    found("2 holds count", where, f"held {row.held}, open holds {row.open_holds}")
                if row.bounded and row.posted - row.held < 0:
                    found("2 available >= 0", where, f"available {row.posted - row.held}")
                if row.kind == "participant" and row.asset == "POINTS":
                    available = row.posted - row.held
                    if available != row.lots_sum:
                        found(
                            "3 balance = open lots",
                            where,
                            f"available {available}, open lots {row.lots_sum}",
                        )
                elif row.lots_sum:
                    found("3 balance = open lots", where, f"a {row.kind} account holds lots")

            if progress is not None:
                progress(0, report.lots + report.postings)
            async for row in _stream(conn, _LOT_FACTS):
                tick()
                expected_code = f"participant:{row.participant_id}:POINTS"
                if (
                    row.amount != row.points - row.debt_paid
                    or row.expires_at != row.credit_expires_at
                    or row.code != expected_code
                ):
                    found(
                        "7 hash chain",
                        f"ledger_lots id={row.id}",
                        "amount, expiry or owner differs from its credit transaction",
                    )

            async for row in _stream(conn, _LOTS):
                found(
                    "3 balance = open lots",
                    f"ledger_lots id={row.id}",
                    f"remaining {row.remaining}, movements sum {row.moved}",
                )

            await _verify_chains(conn, found, report, checkpoint or {}, tick)
    if progress is not None:
        progress(report.lots + report.postings, report.lots + report.postings)
    return report


async def _verify_chains(
    conn: AsyncConnection,
    found: Any,
    report: VerifyReport,
    checkpoint: Checkpoint,
    tick: Callable[[], None],
) -> None:
    account: int | None = None
    expected_seq = 0
    running = ZERO_HASH
    head: tuple[int, bytes] = (0, ZERO_HASH)
    broken = False

    def close_account() -> None:
        if account is None:
            return
        report.heads[account] = (expected_seq, running.hex())
        anchored = checkpoint.get(account)
        if anchored is not None and anchored[0] > expected_seq:
            found(
                "7 hash chain",
                f"ledger_accounts id={account}",
                f"chain rewound: checkpoint has seq {anchored[0]}, chain ends at {expected_seq}",
            )
        if not broken and (expected_seq, running) != head:
            found(
                "7 hash chain",
                f"ledger_accounts id={account}",
                f"chain ends at seq {expected_seq} but the account records seq {head[0]}"
                " (postings deleted, added or the head edited)",
            )

    async for row in _stream(conn, _CHAIN):
        tick()
        if row.account_id != account:
            close_account()
            account, expected_seq, running, broken = row.account_id, 0, ZERO_HASH, False
            head = (row.head_seq, bytes(row.head_hash))
        if broken:
            continue
        expected_seq += 1
        if row.account_seq != expected_seq:
            found(
                "7 hash chain",
                f"ledger_postings id={row.id}",
                f"account {row.account_id} seq {row.account_seq}, expected {expected_seq}",
            )
            broken = True
            continue
        digest = transaction_digest(
            row.tx_id, row.origin, row.idempotency_key, row.kind, row.request, row.created_at
        )
        running = link(
            running, posting_digest(digest, row.account_id, row.asset, row.amount, row.account_seq)
        )
        anchored = checkpoint.get(row.account_id)
        if anchored is not None and anchored[0] == row.account_seq and anchored[1] != running.hex():
            found(
                "7 hash chain",
                f"ledger_postings id={row.id}",
                f"differs from the checkpoint at account {row.account_id} seq {row.account_seq}",
            )
            broken = True
            continue
        if running != bytes(row.chain_hash):
            found(
                "7 hash chain",
                f"ledger_postings id={row.id}",
                f"hash does not match (posting or ledger_transactions id={row.tx_id} altered)",
            )
            broken = True
    close_account()

    for missing in sorted(set(checkpoint) - set(report.heads)):
        found(
            "7 hash chain",
            f"ledger_accounts id={missing}",
            f"checkpoint has seq {checkpoint[missing][0]} but the account has no postings",
        )

    async for row in _stream(conn, _HEADS_WITHOUT_POSTINGS):
        found(
            "7 hash chain",
            f"ledger_accounts id={row.id} ({row.code})",
            f"records {row.chain_seq} postings but none exist",
        )
