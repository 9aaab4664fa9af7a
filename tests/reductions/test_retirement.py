"""Serial blocks: split and transferred to organisations, retired once; the certificate;
`reductions verify` naming a breach and the CLI exiting 1."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from service.cli import main as cli_main
from service.errors import ProblemError
from service.models import ReductionBatch
from service.reductions import documents
from service.reductions import service as reductions
from service.reductions.errors import (
    BlockAlreadyRetiredError,
    BlockNotHeldError,
    InvalidSplitError,
)
from tests.reductions.conftest import ACTOR, Programme


async def _issued(programme: Programme, riders: int = 4) -> ReductionBatch:
    people = [await programme.rider() for _ in range(riders)]
    await programme.rides([(p, 40000) for p in people])  # 1868 g each
    await programme.pool()
    return await programme.run()


async def _root_block(programme: Programme, batch: ReductionBatch) -> int:
    rows = await programme.sql("SELECT id FROM reduction_blocks WHERE batch_id = :b", b=batch.id)
    return int(rows[0][0])  # type: ignore[call-overload]


async def _act(programme: Programme, work: Any) -> Any:
    async with programme.live.sessionmaker() as session, session.begin():
        return await work(session)


async def test_split_transfer_and_retire_once(programme: Programme) -> None:
    batch = await _issued(programme)  # 7472 g: 7 kg
    root = await _root_block(programme, batch)
    for code, name in (("acme", "Acme 绿色科技有限公司"), ("globex", "Globex Ltd")):
        await _act(
            programme, lambda s, c=code, n=name: reductions.create_holder(s, ACTOR, code=c, name=n)
        )

    moved = await _act(
        programme,
        lambda s: reductions.transfer(
            s, ACTOR, block_id=root, from_holder=None, to_holder="acme", kilograms=3
        ),
    )
    acme_block, rest = moved
    assert (acme_block.serial_first, acme_block.serial_last, rest.serial_last) == (1, 3, 7)
    # The split block is gone: neither the programme nor anyone can act on it any more.
    with pytest.raises(BlockNotHeldError):
        await _act(
            programme,
            lambda s: reductions.retire(
                s,
                ACTOR,
                block_id=root,
                holder=None,
                beneficiary="x",
                reason="y",
                now=datetime.now(UTC),
            ),
        )
    # Acme passes 1 kg on to Globex, then retires 1 of the 2 kg it keeps.
    to_globex, acme_left = await _act(
        programme,
        lambda s: reductions.transfer(
            s, ACTOR, block_id=acme_block.id, from_holder="acme", to_holder="globex", kilograms=1
        ),
    )
    with pytest.raises(BlockNotHeldError):  # transferred away: Acme cannot retire it
        await _act(
            programme,
            lambda s: reductions.retire(
                s,
                ACTOR,
                block_id=to_globex.id,
                holder="acme",
                beneficiary="x",
                reason="y",
                now=datetime.now(UTC),
            ),
        )
    with pytest.raises(InvalidSplitError):
        await _act(
            programme,
            lambda s: reductions.retire(
                s,
                ACTOR,
                block_id=acme_left.id,
                holder="acme",
                kilograms=3,
                beneficiary="x",
                reason="y",
                now=datetime.now(UTC),
            ),
        )
    retirement = await _act(
        programme,
        lambda s: reductions.retire(
            s,
            ACTOR,
            block_id=acme_left.id,
            holder="acme",
            kilograms=1,
            beneficiary="Acme staff commuting 2026",
            reason="voluntary offset <2026>",
            now=datetime.now(UTC),
        ),
    )
    with pytest.raises(BlockAlreadyRetiredError):
        await _act(
            programme,
            lambda s: reductions.retire(
                s,
                ACTOR,
                block_id=retirement.block_id,
                holder="acme",
                beneficiary="x",
                reason="y",
                now=datetime.now(UTC),
            ),
        )
    cert = await _act(programme, lambda s: reductions.certificate(s, retirement.id))
    data = documents.certificate_json(cert)
    assert data["kilograms"] == 1 and data["serial_first"] == data["serial_last"] == "0000000002"
    assert data["retired_by"] == "Acme 绿色科技有限公司"
    page = documents.certificate_html(cert)
    assert "voluntary offset &lt;2026&gt;" in page and "<2026>" not in page

    registry = await _act(programme, lambda s: reductions.registry(s, offset=0, limit=50))
    public = documents.registry_json(registry)
    assert public["totals"][0]["issued_kg"] == 7
    assert public["totals"][0]["transferred_kg"] == 3
    assert public["totals"][0]["retired_kg"] == 1
    assert sum(b["kilograms"] for b in public["blocks"]) == 7
    text = repr(public)
    assert "Acme staff commuting" not in text  # beneficiaries stay on the certificate
    for pid in programme.riders:
        assert str(pid) not in text and programme.riders[pid] not in text
    assert (await programme.verify()).breaches == []

    # The database itself refuses a second retirement of a block.
    with pytest.raises(IntegrityError, match="uq_reduction_retirements_block_id"):
        await programme.sql(
            "INSERT INTO reduction_retirements (block_id, beneficiary, reason)"
            " VALUES (:b, 'again', 'again')",
            b=retirement.block_id,
        )


async def test_racing_retirements_and_transfers_of_one_block(programme: Programme) -> None:
    batch = await _issued(programme)
    await _act(programme, lambda s: reductions.create_holder(s, ACTOR, code="acme", name="Acme"))
    block = await _root_block(programme, batch)

    async def retire() -> Any:
        try:
            return await _act(
                programme,
                lambda s: reductions.retire(
                    s,
                    ACTOR,
                    block_id=block,
                    holder=None,
                    beneficiary="b",
                    reason="r",
                    now=datetime.now(UTC),
                ),
            )
        except ProblemError as error:
            return error

    async def transfer() -> Any:
        try:
            return await _act(
                programme,
                lambda s: reductions.transfer(
                    s, ACTOR, block_id=block, from_holder=None, to_holder="acme"
                ),
            )
        except ProblemError as error:
            return error

    outcomes = await asyncio.gather(retire(), retire(), transfer(), retire())
    won = [o for o in outcomes if not isinstance(o, ProblemError)]
    assert len(won) == 1, outcomes
    assert all(
        isinstance(o, BlockAlreadyRetiredError | BlockNotHeldError)
        for o in outcomes
        if isinstance(o, ProblemError)
    )
    retirements = await programme.sql("SELECT count(*) FROM reduction_retirements")
    assert retirements[0][0] == (0 if isinstance(won[0], list) else 1)
    assert (await programme.verify()).breaches == []


TAMPERING = [
    (
        "UPDATE reduction_batch_credits SET grams = grams + 1"
        " WHERE credit_event_id = (SELECT min(credit_event_id) FROM reduction_batch_credits)",
        "provenance holds",
    ),
    ("UPDATE reduction_blocks SET serial_last = serial_last - 1", "blocks end at"),
    (
        "INSERT INTO reduction_blocks (batch_id, serial_first, serial_last, status)"
        " SELECT id, serial_last + 1, serial_last + 1, 'active' FROM reduction_batches",
        "blocks end at",
    ),
    ("UPDATE reduction_blocks SET status = 'retired'", "retired without a retirement"),
    (
        "UPDATE reduction_batches SET opening_grams = opening_grams + 5,"
        " pooled_grams = pooled_grams - 5",
        "opens with 5 g",
    ),
]


@pytest.mark.parametrize(("statement", "named"), TAMPERING)
async def test_verify_names_each_breach(programme: Programme, statement: str, named: str) -> None:
    await _issued(programme)
    assert (await programme.verify()).breaches == []
    await programme.sql(statement)
    breaches = (await programme.verify()).breaches
    assert any(named in b for b in breaches), breaches


async def test_verify_sees_grams_moved_out_of_a_pool_behind_its_back(
    programme: Programme,
) -> None:
    await _issued(programme)
    # (Pool accounts of earlier tests are kept, zeroed: only this test's pool has grams.)
    await programme.sql(
        "UPDATE ledger_accounts SET posted = posted - 7 WHERE kind = 'pool' AND posted >= 7"
    )
    breaches = (await programme.verify()).breaches
    assert any("pool account balance" in b for b in breaches), breaches


async def test_the_cli_exits_1_naming_the_breach(
    programme: Programme, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await _issued(programme)
    url = programme.live.sessionmaker.kw["bind"].url.render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", url.replace("+asyncpg", ""))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # verify needs no Redis
    from service.config import get_settings

    get_settings.cache_clear()
    try:
        assert await asyncio.to_thread(cli_main, ["reductions", "verify"]) == 0
        assert "OK" in capsys.readouterr().out
        await programme.sql("UPDATE reduction_blocks SET serial_last = serial_last - 1")
        assert await asyncio.to_thread(cli_main, ["reductions", "verify"]) == 1
        out = capsys.readouterr().out
        assert "BREACH serials: batch 1's blocks end at 6, not 7" in out
    finally:
        get_settings.cache_clear()


async def test_the_cli_runs_a_pool_and_refuses_in_one_line(
    programme: Programme, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    people = [await programme.rider() for _ in range(2)]
    await programme.rides([(p, 40000) for p in people])  # 3736 g
    await programme.pool()
    url = programme.live.sessionmaker.kw["bind"].url.render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", url.replace("+asyncpg", ""))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    from service.config import get_settings

    get_settings.cache_clear()
    capsys.readouterr()  # the app's request log lines so far
    try:
        argv = ["reductions", "run", "jx-metro", "--json"]
        assert await asyncio.to_thread(cli_main, argv) == 0
        doc = json.loads(capsys.readouterr().out)
        assert (doc["kilograms"], doc["carried_out_grams"]) == (3, 736)
        assert await asyncio.to_thread(cli_main, ["reductions", "run", "jx-metro"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == "error: pool 'jx-metro' has no eligible credits"
    finally:
        get_settings.cache_clear()
    audit = await programme.sql(
        "SELECT actor, action FROM admin_audit_log WHERE action = 'reductions.batch.issue'"
    )
    assert audit == [("cli", "reductions.batch.issue")]
