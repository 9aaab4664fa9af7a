"""Redemption: the code the app shows at a till, two-phase redemption on the ledger's holds,
and the offer catalogue with its stock.

A redemption's state is never stored twice: it is read from the ledger's hold, its
resolution and its refunds. Offer stock is likewise derived (stock minus redemptions still
authorised or captured), so a hold that times out gives its stock back without anyone
having to remember to.

Lock order, as everywhere: the redemption token row, the offer row, ledger keys, ledger
accounts. An offer's row is locked only when it has a stock or a per-person limit to keep:
tills redeeming an unlimited offer do not queue on it.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from service.errors import ConflictError
from service.i18n import _
from service.ledger import service as ledger
from service.ledger.schemas import Status
from service.merchants import offers_on_sale
from service.redemption.errors import (
    OfferUnavailableError,
    RedemptionNotFoundError,
    RedemptionTokenInvalidError,
)
from service.redemption.repository import RedemptionRepository, RedemptionRow
from service.redemption.schemas import OfferOut, RedemptionOut
from service.webhooks import enqueue

TOKEN_LIFETIME = timedelta(minutes=2)

__all__ = [
    "TOKEN_LIFETIME",
    "IssuedToken",
    "RedemptionTokenInvalidError",
    "announce_expired",
    "authorise",
    "capture",
    "catalogue",
    "consume_token",
    "create_token",
    "ledger_origin",
    "redemption_for",
    "refund",
    "view",
    "void",
]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def ledger_origin(merchant_id: uuid.UUID) -> str:
    return f"merchant:{merchant_id}"


async def create_token(
    session: AsyncSession, participant_id: uuid.UUID, *, now: datetime
) -> IssuedToken:
    """A fresh single-use token; only its hash is kept."""
    token = "rt_" + secrets.token_urlsafe(24)
    expires_at = now + TOKEN_LIFETIME
    await RedemptionRepository.from_session(session).insert_token(
        _hash(token), participant_id, expires_at
    )
    return IssuedToken(token, expires_at)


async def consume_token(session: AsyncSession, token: str, *, now: datetime) -> uuid.UUID:
    """The participant behind a token, marking it used: exactly one caller ever gets it."""
    consumed = await RedemptionRepository.from_session(session).consume_token(
        _hash(token), now=now, offer_id=None, merchant_id=uuid.UUID(int=0)
    )
    if consumed is None:
        raise RedemptionTokenInvalidError(_("ask the customer to show a fresh code"))
    return consumed.participant_id


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
    rows = await offers_on_sale(
        session, now=now, region=region, merchant_code=merchant_code, offset=offset, limit=limit
    )
    taken = await RedemptionRepository.from_session(session).taken(
        [offer.id for offer, _, _ in rows if offer.stock is not None]
    )
    return [
        OfferOut(
            id=offer.id,
            merchant_code=merchant_code_,
            merchant_name=merchant_name,
            title=offer.title,
            points_price=offer.points_price,
            face_value_fen=offer.face_value_fen,
            stock_left=None
            if offer.stock is None
            else max(0, offer.stock - taken.get(offer.id, 0)),
            per_user_limit=offer.per_user_limit,
            region=offer.region,
            valid_from=offer.valid_from,
            valid_to=offer.valid_to,
        )
        for offer, merchant_code_, merchant_name in rows
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
    """The customer's code and an offer (or an amount) become a hold on their points.

    Statements: the token consumed with the offer's terms (one), the offer locked and its
    takers counted (two, only for an offer with a stock or a per-person limit), the ledger's
    hold (three: lock, lots, write), the redemption row (one), the webhook (one).
    """
    repository = RedemptionRepository.from_session(session)
    consumed = await repository.consume_token(
        _hash(redemption_token), now=now, offer_id=offer_id, merchant_id=merchant_id
    )
    if consumed is None:
        raise RedemptionTokenInvalidError(_("ask the customer to show a fresh code"))
    participant_id, offer = consumed.participant_id, consumed.offer
    amount = points
    if offer_id is not None:
        if offer is None or not offer.valid_from <= now < offer.valid_to:
            raise OfferUnavailableError(_("this offer is not valid at this merchant now"))
        if offer.limited:
            # The terms as locked: current even if the offer changed while this waited.
            offer, taken, mine = await repository.lock_offer_and_count_taken(
                offer_id, participant_id
            )
            if not offer.valid_from <= now < offer.valid_to:
                raise OfferUnavailableError("this offer is not valid at this merchant now")
            if offer.stock is not None and taken >= offer.stock:
                raise OfferUnavailableError(_("out of stock"))
            if offer.per_user_limit is not None and mine >= offer.per_user_limit:
                raise OfferUnavailableError(
                    _("this offer is limited to %(limit)s per person", limit=offer.per_user_limit)
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
    redemption = RedemptionRow(
        id=redemption_id,
        merchant_id=merchant_id,
        terminal_id=terminal_id,
        participant_id=participant_id,
        offer_id=offer_id,
        points=amount,
        hold_id=hold.hold_id,
        created_at=now,
    )
    await repository.insert(redemption)
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
    return await _announce(
        session, merchant_id, "redemption.authorised", state, consumed.subscribers
    )


async def _announce(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    event_type: str,
    state: RedemptionOut,
    subscribers: list[uuid.UUID] | None = None,
) -> RedemptionOut:
    """Queue the merchant's webhook in this transaction: sent only if the work commits.
    `subscribers`: the endpoints, when read already (nothing to write when there are none)."""
    if subscribers == []:
        return state
    await enqueue(
        session,
        owner_type="merchant",
        owner_id=merchant_id,
        event_type=event_type,
        payload=state.model_dump(mode="json"),
        endpoint_ids=subscribers,
    )
    return state


async def _redemption(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    redemption_id: uuid.UUID,
    terminal_id: uuid.UUID | None = None,
) -> RedemptionRow:
    """The merchant's redemption; a key bound to a terminal sees only that terminal's."""
    found = await RedemptionRepository.from_session(session).get(
        merchant_id, redemption_id, terminal_id
    )
    if found is None:
        raise RedemptionNotFoundError(
            _("no redemption %(redemption_id)s at this merchant", redemption_id=redemption_id)
        )
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
    found = await RedemptionRepository.from_session(session).get_for_capture(
        merchant_id, redemption_id, terminal_id
    )
    if found is None:
        raise RedemptionNotFoundError(
            _("no redemption %(redemption_id)s at this merchant", redemption_id=redemption_id)
        )
    redemption, subscribers = found
    posted = await ledger.post_hold(
        session,
        origin=ledger_origin(merchant_id),
        key=f"capture:{redemption_id}:{request_key}",
        hold_id=redemption.hold_id,
        amount=points if points is not None else redemption.points,
        now=now,
        participant_id=redemption.participant_id,
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
    return await _announce(session, merchant_id, "redemption.captured", state, subscribers)


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
    hold = await ledger.hold_state(session, redemption.hold_id)
    if hold.outcome != "posted" or hold.transaction_id is None:
        raise ConflictError(_("only a captured redemption can be refunded"))
    await ledger.refund(
        session,
        origin=ledger_origin(merchant_id),
        key=f"refund:{redemption_id}:{refund_key}",
        redemption_id=hold.transaction_id,
        amount=points,
    )
    return await _announce(
        session, merchant_id, "redemption.refunded", await _view(session, redemption)
    )


async def announce_expired(session: AsyncSession, hold_ids: list[int]) -> int:
    """Tell each merchant whose redemption's hold just timed out (`redemption.expired`), in
    the transaction that expired the holds: sent if and only if the expiry commits. Returns
    how many redemptions were announced."""
    found = await RedemptionRepository.from_session(session).by_holds_for_expiry(hold_ids)
    for redemption, subscribers in found:
        if subscribers:
            state = await _view(session, redemption)
            await _announce(
                session, redemption.merchant_id, "redemption.expired", state, subscribers
            )
    return len(found)


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


async def _view(session: AsyncSession, redemption: RedemptionRow) -> RedemptionOut:
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
