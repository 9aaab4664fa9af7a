"""Merchants, offers, two-phase redemption and settlement, on top of the ledger's holds.

A redemption's state is never stored twice: it is read from the ledger's hold, its
resolution and its refunds. Offer stock is likewise derived (stock minus redemptions still
authorised or captured), so a hold that times out gives its stock back without anyone
having to remember to.

Lock order, as everywhere: the redemption token row, the offer row, ledger keys, ledger
accounts.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.errors import ConflictError, ValidationProblem
from service.fields import CODE_PATTERN
from service.ledger import repository as ledger_repo
from service.ledger import service as ledger
from service.ledger.schemas import Status
from service.merchants.errors import (
    MerchantKeyNotFoundError,
    MerchantNotFoundError,
    OfferUnavailableError,
    RedemptionNotFoundError,
)
from service.merchants.schemas import (
    OfferOut,
    RedemptionOut,
    StatementLine,
    StatementOut,
)
from service.models import (
    LedgerAccount,
    LedgerHold,
    LedgerHoldResolution,
    LedgerPosting,
    LedgerTransaction,
    Merchant,
    MerchantApiKey,
    MerchantTerminal,
    Offer,
    Redemption,
)
from service.redemption.service import consume_token
from service.webhooks import enqueue

_CODE = re.compile(CODE_PATTERN)


def ledger_origin(merchant_id: uuid.UUID) -> str:
    return f"merchant:{merchant_id}"


async def create_merchant(
    session: AsyncSession, *, code: str, name: str, region: str | None = None
) -> Merchant:
    if not _CODE.match(code):
        raise ValidationProblem("code: 2-63 lower-case letters, digits and '-'")
    merchant_id = await session.scalar(
        insert(Merchant)
        .values(id=uuid.uuid4(), code=code, name=name, region=region)
        .on_conflict_do_nothing(index_elements=["code"])
        .returning(Merchant.id)
    )
    if merchant_id is None:
        raise ConflictError(f"a merchant with code {code!r} exists")
    merchant = await session.get(Merchant, merchant_id)
    assert merchant is not None
    return merchant


async def add_terminal(
    session: AsyncSession, merchant_id: uuid.UUID, code: str, name: str
) -> MerchantTerminal:
    terminal = MerchantTerminal(id=uuid.uuid4(), merchant_id=merchant_id, code=code, name=name)
    session.add(terminal)
    await session.flush()
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
    session.add(offer)
    await session.flush()
    return offer


def _active_redemptions() -> Any:
    """Redemptions whose hold is pending or captured (not voided or expired)."""
    return (
        select(func.count())
        .select_from(Redemption)
        .join(LedgerHold, LedgerHold.id == Redemption.hold_id)
        .outerjoin(LedgerHoldResolution, LedgerHoldResolution.hold_id == LedgerHold.id)
        .where(
            or_(
                LedgerHoldResolution.hold_id.is_(None),
                LedgerHoldResolution.outcome == "posted",
            )
        )
    )


async def catalogue(
    session: AsyncSession,
    *,
    now: datetime,
    region: str | None = None,
    merchant_code: str | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> list[OfferOut]:
    """Offers valid now, for the app, cheapest first; filter by region and merchant."""
    taken = _active_redemptions().where(Redemption.offer_id == Offer.id).scalar_subquery()
    query = (
        select(Offer, Merchant.code, Merchant.name, taken.label("taken"))
        .join(Merchant, Merchant.id == Offer.merchant_id)
        .where(Offer.valid_from <= now, Offer.valid_to > now, Merchant.status == "active")
        .order_by(Offer.points_price, Offer.id)
        .offset(offset)
        .limit(limit)
    )
    if region is not None:
        query = query.where(or_(Offer.region.is_(None), Offer.region == region))
    if merchant_code is not None:
        query = query.where(Merchant.code == merchant_code)
    return [
        OfferOut(
            id=offer.id,
            merchant_code=code,
            merchant_name=name,
            title=offer.title,
            points_price=offer.points_price,
            face_value_fen=offer.face_value_fen,
            stock_left=None if offer.stock is None else max(0, offer.stock - int(taken)),
            per_user_limit=offer.per_user_limit,
            region=offer.region,
            valid_from=offer.valid_from,
            valid_to=offer.valid_to,
        )
        for offer, code, name, taken in await session.execute(query)
    ]


async def authorise(
    session: AsyncSession,
    *,
    merchant_id: uuid.UUID,
    terminal_id: uuid.UUID | None,
    redemption_token: str,
    offer_id: uuid.UUID | None,
    points: int | None,
    now: datetime,
    hold_for: timedelta,
) -> RedemptionOut:
    """The customer's code and an offer (or an amount) become a hold on their points."""
    participant_id = await consume_token(session, redemption_token, now=now)
    amount = points
    if offer_id is not None:
        offer = await session.scalar(
            select(Offer)
            .where(Offer.id == offer_id, Offer.merchant_id == merchant_id)
            .with_for_update()
        )
        if offer is None or not offer.valid_from <= now < offer.valid_to:
            raise OfferUnavailableError("this offer is not valid at this merchant now")
        if offer.stock is not None:
            taken = await session.scalar(
                _active_redemptions().where(Redemption.offer_id == offer.id)
            )
            if int(taken or 0) >= offer.stock:
                raise OfferUnavailableError("out of stock")
        if offer.per_user_limit is not None:
            mine = await session.scalar(
                _active_redemptions().where(
                    Redemption.offer_id == offer.id, Redemption.participant_id == participant_id
                )
            )
            if int(mine or 0) >= offer.per_user_limit:
                raise OfferUnavailableError(
                    f"this offer is limited to {offer.per_user_limit} per person"
                )
        amount = offer.points_price
    assert amount is not None
    redemption_id = uuid.uuid4()
    hold = await ledger.place_hold(
        session,
        origin=ledger_origin(merchant_id),
        key=f"redemption:{redemption_id}",
        participant_id=participant_id,
        merchant_id=merchant_id,
        amount=amount,
        now=now,
        hold_for=hold_for,
    )
    redemption = Redemption(
        id=redemption_id,
        merchant_id=merchant_id,
        terminal_id=terminal_id,
        participant_id=participant_id,
        offer_id=offer_id,
        points=amount,
        hold_id=hold.hold_id,
        created_at=now,
    )
    # A plain insert (the ORM's unit of work costs more than the row): the object is only
    # read from here on, never flushed.
    await session.execute(_INSERT_REDEMPTION, _redemption_row(redemption))
    if hold.status is not Status.CREATED:  # the ledger already had this hold: ask it
        return await _announce(
            session, merchant_id, "redemption.authorised", await _view(session, redemption)
        )
    # Just placed: nothing to read back.
    state = RedemptionOut(
        id=redemption_id,
        status="authorised",
        offer_id=offer_id,
        points_authorised=amount,
        points_captured=0,
        points_refunded=0,
        hold_expires_at=hold.expires_at,
        created_at=now,
    )
    return await _announce(session, merchant_id, "redemption.authorised", state)


_INSERT_REDEMPTION = insert(cast(Table, Redemption.__table__))


def _redemption_row(redemption: Redemption) -> dict[str, Any]:
    return {
        "id": redemption.id,
        "merchant_id": redemption.merchant_id,
        "terminal_id": redemption.terminal_id,
        "participant_id": redemption.participant_id,
        "offer_id": redemption.offer_id,
        "points": redemption.points,
        "hold_id": redemption.hold_id,
        "created_at": redemption.created_at,
    }


async def _announce(
    session: AsyncSession, merchant_id: uuid.UUID, event_type: str, state: RedemptionOut
) -> RedemptionOut:
    """Queue the merchant's webhook in this transaction: sent only if the work commits."""
    await enqueue(
        session,
        owner_type="merchant",
        owner_id=merchant_id,
        event_type=event_type,
        payload=state.model_dump(mode="json"),
    )
    return state


async def _redemption(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    redemption_id: uuid.UUID,
    terminal_id: uuid.UUID | None = None,
) -> Redemption:
    """The merchant's redemption; a key bound to a terminal sees only that terminal's."""
    query = select(Redemption).where(
        Redemption.id == redemption_id, Redemption.merchant_id == merchant_id
    )
    if terminal_id is not None:
        query = query.where(Redemption.terminal_id == terminal_id)
    found = await session.scalar(query)
    if found is None:
        raise RedemptionNotFoundError(f"no redemption {redemption_id} at this merchant")
    return found


async def capture(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    redemption_id: uuid.UUID,
    points: int | None,
    *,
    now: datetime,
    request_key: str,
    terminal_id: uuid.UUID | None = None,
) -> RedemptionOut:
    """Take the held points, all or part, once; the rest goes back to the customer.

    The ledger key carries the caller's idempotency key: a retry of this request replays,
    a second, different capture finds the hold resolved.
    """
    redemption = await _redemption(session, merchant_id, redemption_id, terminal_id)
    posted = await ledger.post_hold(
        session,
        origin=ledger_origin(merchant_id),
        key=f"capture:{redemption_id}:{request_key}",
        hold_id=redemption.hold_id,
        amount=points if points is not None else redemption.points,
        now=now,
    )
    if posted.status is not Status.CREATED or posted.hold_expires_at is None:
        state = await _view(session, redemption)  # a replay: refunds may have followed
    else:  # just captured: nothing refunded yet, nothing to read back
        state = RedemptionOut(
            id=redemption.id,
            status="captured",
            offer_id=redemption.offer_id,
            points_authorised=redemption.points,
            points_captured=posted.amount_posted,
            points_refunded=0,
            hold_expires_at=posted.hold_expires_at,
            created_at=redemption.created_at,
        )
    return await _announce(session, merchant_id, "redemption.captured", state)


async def void(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    redemption_id: uuid.UUID,
    *,
    request_key: str,
    terminal_id: uuid.UUID | None = None,
) -> RedemptionOut:
    """Release the hold; the points and the offer's stock come back."""
    redemption = await _redemption(session, merchant_id, redemption_id, terminal_id)
    await ledger.void_hold(
        session,
        origin=ledger_origin(merchant_id),
        key=f"void:{redemption_id}:{request_key}",
        hold_id=redemption.hold_id,
    )
    return await _announce(
        session, merchant_id, "redemption.voided", await _view(session, redemption)
    )


async def refund(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    redemption_id: uuid.UUID,
    points: int,
    *,
    refund_key: str,
    terminal_id: uuid.UUID | None = None,
) -> RedemptionOut:
    """Give captured points back to the lots they came from."""
    redemption = await _redemption(session, merchant_id, redemption_id, terminal_id)
    resolution = await session.get(LedgerHoldResolution, redemption.hold_id)
    if resolution is None or resolution.transaction_id is None:
        raise ConflictError("only a captured redemption can be refunded")
    await ledger.refund(
        session,
        origin=ledger_origin(merchant_id),
        key=f"refund:{redemption_id}:{refund_key}",
        redemption_id=resolution.transaction_id,
        amount=points,
    )
    return await _announce(
        session, merchant_id, "redemption.refunded", await _view(session, redemption)
    )


async def redemption_for(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    redemption_id: uuid.UUID,
    terminal_id: uuid.UUID | None,
) -> None:
    """Raise not-found unless the key may see this redemption."""
    await _redemption(session, merchant_id, redemption_id, terminal_id)


async def view(
    session: AsyncSession, merchant_id: uuid.UUID, redemption_id: uuid.UUID
) -> RedemptionOut:
    """A redemption as the ledger says it stands."""
    return await _view(session, await _redemption(session, merchant_id, redemption_id))


async def _view(session: AsyncSession, redemption: Redemption) -> RedemptionOut:
    hold = await ledger.hold_state(session, redemption.hold_id)
    captured = refunded = 0
    if hold.outcome is None:
        status = "authorised"
    elif hold.outcome in ("voided", "expired"):
        status = hold.outcome
    else:
        captured, refunded = hold.amount_posted, hold.refunded
        status = (
            "captured"
            if refunded == 0
            else ("refunded" if refunded >= captured else "partially_refunded")
        )
    return RedemptionOut(
        id=redemption.id,
        status=status,
        offer_id=redemption.offer_id,
        points_authorised=redemption.points,
        points_captured=captured,
        points_refunded=refunded,
        hold_expires_at=hold.expires_at,
        created_at=redemption.created_at,
    )


async def statement(
    session: AsyncSession,
    merchant: Merchant,
    *,
    start: datetime,
    end: datetime,
    fen_per_point: int,
) -> StatementOut:
    """What the program owes the merchant for a period, straight from the ledger."""
    codes = ledger_repo.merchant_account_codes(merchant.id)
    rows = await session.execute(
        select(
            LedgerTransaction.created_at,
            LedgerTransaction.kind,
            LedgerTransaction.id,
            LedgerPosting.amount,
        )
        .join(LedgerPosting, LedgerPosting.transaction_id == LedgerTransaction.id)
        .join(LedgerAccount, LedgerAccount.id == LedgerPosting.account_id)
        .where(
            LedgerAccount.code.in_(codes),
            and_(LedgerTransaction.created_at >= start, LedgerTransaction.created_at < end),
        )
        .order_by(LedgerTransaction.created_at, LedgerTransaction.id)
    )
    lines = [
        StatementLine(
            at=at,
            kind="redemption" if kind == "redemption" else "refund",
            transaction_id=tx,
            points=amount,
        )
        for at, kind, tx, amount in rows
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


# --- administration (the admin API, issue 15): reads, keys and the merchant's status ----------


async def merchant_by_code(session: AsyncSession, code: str) -> Merchant:
    merchant = await session.scalar(select(Merchant).where(Merchant.code == code))
    if merchant is None:
        raise MerchantNotFoundError(f"no merchant {code!r}")
    return merchant


async def merchants_page(
    session: AsyncSession, *, after_code: str | None, limit: int
) -> Sequence[Merchant]:
    """At most `limit` merchants by code, after `after_code` (keyset on the unique code)."""
    query = select(Merchant).order_by(Merchant.code).limit(limit)
    if after_code is not None:
        query = query.where(Merchant.code > after_code)
    return (await session.execute(query)).scalars().all()


async def merchant_key(
    session: AsyncSession, merchant_id: uuid.UUID, key_id: str
) -> MerchantApiKey:
    """One of the merchant's keys (another merchant's key id is not found)."""
    key = await session.get(MerchantApiKey, key_id)
    if key is None or key.merchant_id != merchant_id:
        raise MerchantKeyNotFoundError(f"the merchant has no key {key_id}")
    return key


async def revoke_merchant_key(
    session: AsyncSession, merchant_id: uuid.UUID, key_id: str, *, now: datetime
) -> MerchantApiKey:
    """Stop a key now (revoking a revoked key keeps its first revocation)."""
    key = await merchant_key(session, merchant_id, key_id)
    await session.execute(
        update(MerchantApiKey)
        .where(MerchantApiKey.key_id == key_id, MerchantApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await session.refresh(key)
    return key


async def set_merchant_status(
    session: AsyncSession, merchant_id: uuid.UUID, status: str
) -> Merchant:
    """Suspend ('suspended': its keys are refused, 403) or reinstate ('active')."""
    if status not in ("active", "suspended"):
        raise ValidationProblem("status is 'active' or 'suspended'")
    await session.execute(update(Merchant).where(Merchant.id == merchant_id).values(status=status))
    merchant = await session.get(Merchant, merchant_id, populate_existing=True)
    if merchant is None:
        raise MerchantNotFoundError(f"no merchant {merchant_id}")
    return merchant
