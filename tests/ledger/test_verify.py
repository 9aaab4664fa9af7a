"""`ledger verify` passes on honest data and names the row on tampered data."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from service.cli import main as cli_main
from service.ledger import service as ledger
from service.ledger.verify import verify_ledger
from tests.ledger.conftest import NOW, Ledger


async def _some_history(env: Ledger) -> uuid.UUID:
    alice = uuid.uuid4()
    await env.credit(alice, 100, grams=100)
    await env.credit(alice, 40, grams=40, expires_at=NOW + timedelta(days=5))
    placed = await env.run(
        lambda s: ledger.place_hold(
            s,
            origin="till",
            key="h",
            participant_id=alice,
            merchant_id=uuid.uuid4(),
            amount=60,
            now=NOW,
            hold_for=timedelta(minutes=5),
        )
    )
    await env.run(
        lambda s: ledger.post_hold(
            s, origin="till", key="p", hold_id=placed.hold_id, amount=50, now=NOW
        )
    )
    return alice


async def _tamper(env: Ledger, statement: str) -> None:
    async with env.engine.begin() as conn:
        # What an attacker with database access would do: switch the triggers off.
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text(statement))


async def test_verify_passes_on_honest_history(ledger_env: Ledger) -> None:
    await _some_history(ledger_env)
    report = await ledger_env.verify()
    assert report.ok, report.violations
    assert report.transactions == 3
    assert report.lots == 2


@pytest.mark.parametrize(
    ("statement", "invariant", "where"),
    [
        (
            "UPDATE ledger_postings SET amount = amount + 1 WHERE id = 2",
            "1 postings sum to zero",
            "ledger_transactions id=1",
        ),
        (
            "UPDATE ledger_postings SET amount = amount * 2"
            " WHERE transaction_id = 1 AND asset = 'GCO2E'",
            "7 hash chain",
            "ledger_postings id=",
        ),
        (
            "UPDATE ledger_transactions SET request = jsonb_set(request, '{points}', '1000')"
            " WHERE id = 1",
            "7 hash chain",
            "ledger_transactions id=1",
        ),
        (
            "UPDATE ledger_accounts SET posted = posted + 5"
            " WHERE kind = 'participant' AND asset = 'POINTS'",
            "3 balance = postings",
            "ledger_accounts id=",
        ),
        (
            "UPDATE ledger_lots SET remaining = remaining + 5 WHERE id = 1",
            "3 balance = open lots",
            "ledger_lots id=1",
        ),
        (
            "DELETE FROM ledger_postings WHERE id = (SELECT max(id) FROM ledger_postings)",
            "7 hash chain",
            "ledger_accounts id=",
        ),
        (
            "UPDATE ledger_accounts SET held = held + 3"
            " WHERE kind = 'participant' AND asset = 'POINTS'",
            "2 holds count",
            "ledger_accounts id=",
        ),
    ],
)
async def test_verify_names_the_tampered_row(
    ledger_env: Ledger, statement: str, invariant: str, where: str
) -> None:
    await _some_history(ledger_env)
    await _tamper(ledger_env, statement)
    report = await ledger_env.verify()
    assert not report.ok
    assert any(v.invariant == invariant and where in str(v) for v in report.violations), [
        str(v) for v in report.violations
    ]


async def test_cli_exits_non_zero_and_prints_the_row(
    ledger_env: Ledger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await _some_history(ledger_env)
    url = ledger_env.engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", url.replace("+asyncpg", ""))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # verify needs no Redis
    from service.config import get_settings

    get_settings.cache_clear()
    try:
        assert await _run_cli(["ledger", "verify"]) == 0
        assert "OK" in capsys.readouterr().out
        await _tamper(ledger_env, "UPDATE ledger_postings SET amount = amount + 1 WHERE id = 2")
        assert await _run_cli(["ledger", "verify"]) == 1
        out = capsys.readouterr().out
        assert "VIOLATION [1 postings sum to zero] ledger_transactions id=1" in out
    finally:
        get_settings.cache_clear()


async def _run_cli(argv: list[str]) -> int:
    import asyncio

    # The CLI runs its own event loop; keep it off the test's loop.
    return await asyncio.to_thread(cli_main, argv)


async def test_lot_facts_cannot_be_edited_and_verify_catches_a_forced_edit(
    ledger_env: Ledger,
) -> None:
    from sqlalchemy.exc import DBAPIError

    await _some_history(ledger_env)
    with pytest.raises(DBAPIError, match="append-only"):
        await ledger_env.run(
            lambda s: s.execute(text("UPDATE ledger_lots SET expires_at = '2099-01-01'"))
        )
    await _tamper(
        ledger_env, "UPDATE ledger_lots SET expires_at = '2099-01-01', amount = amount WHERE id = 1"
    )
    report = await ledger_env.verify()
    assert any(v.where == "ledger_lots id=1" for v in report.violations), report.violations


async def test_a_checkpoint_holds_as_the_chain_grows_and_catches_a_rewind(
    ledger_env: Ledger,
) -> None:
    alice = await _some_history(ledger_env)
    checkpoint = (await ledger_env.verify()).heads
    await ledger_env.credit(alice, 5, key="later")
    assert (await verify_ledger(ledger_env.engine, checkpoint=checkpoint)).ok

    # Heads published later than what the database now holds: a rewind.
    ahead = {k: (v[0] + 1, v[1]) for k, v in checkpoint.items()}
    report = await verify_ledger(ledger_env.engine, checkpoint=ahead)
    assert any("chain rewound" in v.detail for v in report.violations)

    # A head whose hash differs: the history before it was rewritten.
    account, (seq, _) = next(iter(checkpoint.items()))
    rewritten = {account: (seq, "00" * 32)}
    report = await verify_ledger(ledger_env.engine, checkpoint=rewritten)
    assert any("differs from the checkpoint" in v.detail for v in report.violations)


async def test_verify_reports_progress_and_the_cli_answers_json(
    ledger_env: Ledger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from service.ledger.verify import verify_ledger

    await _some_history(ledger_env)
    heard: list[tuple[int, int | None]] = []
    report = await verify_ledger(
        ledger_env.engine, progress=lambda done, total: heard.append((done, total))
    )
    assert heard[0] == (0, report.lots + report.postings)
    assert heard[-1] == (report.lots + report.postings,) * 2

    url = ledger_env.engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", url.replace("+asyncpg", ""))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    from service.config import get_settings

    get_settings.cache_clear()
    try:
        assert await _run_cli(["ledger", "verify", "--json", "--no-progress"]) == 0
        out = json.loads(capsys.readouterr().out)
    finally:
        get_settings.cache_clear()
    assert out["ok"] is True and out["violations"] == []
    assert out["postings"] == report.postings
