"""Merchants, their terminals and offers, and their settlement statements.

Redemption (tokens, holds, captures, refunds, offer stock) is `service.redemption`'s.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from service.errors import ConflictError, NotFoundError, ValidationProblem
from service.fields import CODE_PATTERN
from service.ledger import service as ledger
from service.merchants.repository import MerchantRepository
from service.merchants.schemas import (
    StatementLine,
    StatementOut,
)
from service.models import (
    Merchant,
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
        raise NotFoundError(f"no merchant {merchant_id}")
    return merchant


async def merchants_by_id(
    session: AsyncSession, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, Merchant]:
    """The merchants of `ids` that exist, by id. One statement."""
    rows = await MerchantRepository.from_session(session).by_ids(sorted(set(ids)))
    return {row.id: row for row in rows}
