"""Merchants, their terminals and offers, and their settlement statements.

Redemption (tokens, holds, captures, refunds, offer stock) is `service.redemption`'s.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from service.errors import ConflictError, ValidationProblem
from service.fields import CODE_PATTERN
from service.ledger import service as ledger
from service.merchants.errors import MerchantKeyNotFoundError, MerchantNotFoundError
from service.merchants.repository import MerchantRepository
from service.merchants.schemas import (
    StatementLine,
    StatementOut,
)
from service.models import (
    Merchant,
    MerchantApiKey,
    MerchantTerminal,
    Offer,
)

_CODE = re.compile(CODE_PATTERN)


async def create_merchant(
    session: AsyncSession, *, code: str, name: str, region: str | None = None
) -> Merchant:
    if not _CODE.match(code):
        raise ValidationProblem("code: 2-63 lower-case letters, digits and '-'")
    merchants = MerchantRepository.from_session(session)
    merchant_id = await merchants.insert_merchant(code=code, name=name, region=region)
    if merchant_id is None:
        raise ConflictError(f"a merchant with code {code!r} exists")
    await ledger.open_merchant_accounts(session, merchant_id)
    merchant = await merchants.get(merchant_id)
    assert merchant is not None
    return merchant


async def add_terminal(
    session: AsyncSession, merchant_id: uuid.UUID, code: str, name: str
) -> MerchantTerminal:
    terminal = MerchantTerminal(id=uuid.uuid4(), merchant_id=merchant_id, code=code, name=name)
    await MerchantRepository.from_session(session).add(terminal)
    return terminal


async def create_offer(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    *,
    title: str,
    points_price: int,
    face_value_fen: int,
    valid_from: datetime,
    valid_to: datetime,
    stock: int | None = None,
    per_user_limit: int | None = None,
    region: str | None = None,
) -> Offer:
    offer = Offer(
        id=uuid.uuid4(),
        merchant_id=merchant_id,
        title=title,
        points_price=points_price,
        face_value_fen=face_value_fen,
        stock=stock,
        per_user_limit=per_user_limit,
        region=region,
        valid_from=valid_from,
        valid_to=valid_to,
    )
    await MerchantRepository.from_session(session).add(offer)
    return offer


async def statement(
    session: AsyncSession,
    merchant: Merchant,
    *,
    start: datetime,
    end: datetime,
    fen_per_point: int,
) -> StatementOut:
    """What the program owes the merchant for a period, straight from the ledger."""
    lines = [
        StatementLine(
            at=line.at,
            kind="redemption" if line.kind == "redemption" else "refund",
            transaction_id=line.transaction_id,
            points=line.points,
        )
        for line in await ledger.settlement_lines(session, merchant.id, start=start, end=end)
    ]
    redeemed = [line.points for line in lines if line.kind == "redemption"]
    refunded = [-line.points for line in lines if line.kind == "refund"]
    net = sum(line.points for line in lines)
    return StatementOut(
        merchant_code=merchant.code,
        period_start=start,
        period_end=end,
        redemptions=len(redeemed),
        points_redeemed=sum(redeemed),
        refunds=len(refunded),
        points_refunded=sum(refunded),
        net_points=net,
        fen_per_point=fen_per_point,
        value_fen=net * fen_per_point,
        lines=lines,
    )


async def get_merchant(session: AsyncSession, merchant_id: uuid.UUID) -> Merchant:
    merchant = await MerchantRepository.from_session(session).get(merchant_id)
    if merchant is None:
        raise MerchantNotFoundError(f"no merchant {merchant_id}")
    return merchant


# --- administration (the admin API, issue 15): reads, keys and the merchant's status ----------


async def merchant_by_code(session: AsyncSession, code: str) -> Merchant:
    merchant = await MerchantRepository.from_session(session).by_code(code)
    if merchant is None:
        raise MerchantNotFoundError(f"no merchant {code!r}")
    return merchant


async def merchants_page(
    session: AsyncSession, *, after_code: str | None, limit: int
) -> Sequence[Merchant]:
    """At most `limit` merchants by code, after `after_code` (keyset on the unique code)."""
    return await MerchantRepository.from_session(session).page(after_code=after_code, limit=limit)


async def merchant_key(
    session: AsyncSession, merchant_id: uuid.UUID, key_id: str
) -> MerchantApiKey:
    """One of the merchant's keys (another merchant's key id is not found)."""
    key = await MerchantRepository.from_session(session).key(key_id)
    if key is None or key.merchant_id != merchant_id:
        raise MerchantKeyNotFoundError(f"the merchant has no key {key_id}")
    return key


async def revoke_merchant_key(
    session: AsyncSession, merchant_id: uuid.UUID, key_id: str, *, now: datetime
) -> MerchantApiKey:
    """Stop a key now (revoking a revoked key keeps its first revocation)."""
    key = await merchant_key(session, merchant_id, key_id)
    return await MerchantRepository.from_session(session).revoke_key(key, now=now)


async def set_merchant_status(
    session: AsyncSession, merchant_id: uuid.UUID, status: str
) -> Merchant:
    """Suspend ('suspended': its keys are refused, 403) or reinstate ('active')."""
    if status not in ("active", "suspended"):
        raise ValidationProblem("status is 'active' or 'suspended'")
    merchant = await MerchantRepository.from_session(session).set_status(merchant_id, status)
    if merchant is None:
        raise MerchantNotFoundError(f"no merchant {merchant_id}")
    return merchant


async def ensure_demo_merchant(session: AsyncSession, partner_key: str) -> str:
    """A demo café with an offer; its key is derived (like partner secrets) so it is stable.
    Returns the key's token."""
    merchants = MerchantRepository.from_session(session)
    merchant = await merchants.by_code("demo-cafe")
    if merchant is None:
        merchant = await create_merchant(
            session, code="demo-cafe", name="Demo café", region="CN-JX"
        )
        now = datetime.now(UTC)
        await create_offer(
            session,
            merchant.id,
            title="Oat latte",
            points_price=500,
            face_value_fen=1500,
            valid_from=now - timedelta(days=1),
            valid_to=now + timedelta(days=365),
            region="CN-JX",
        )
    key_id = "mk_demo" + merchant.id.hex[:13]
    secret = hmac.new(
        partner_key.encode(), b"demo-merchant\x00" + merchant.id.bytes, hashlib.sha256
    ).hexdigest()
    if await merchants.key(key_id) is None:
        await merchants.add(
            MerchantApiKey(
                key_id=key_id,
                merchant_id=merchant.id,
                scopes=["redeem", "refund", "settlement"],
                secret_hash=hashlib.sha256(secret.encode()).digest(),
            )
        )
    return f"cpmk_{key_id}_{secret}"


async def merchants_by_id(
    session: AsyncSession, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, Merchant]:
    """The merchants of `ids` that exist, by id. One statement."""
    rows = await MerchantRepository.from_session(session).by_ids(sorted(set(ids)))
    return {row.id: row for row in rows}
