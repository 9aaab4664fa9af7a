"""What the reports answer. Points and grams are integers; instants carry the programme's
UTC offset (`CARBON_POINTS_PROGRAM_TIMEZONE`)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class PeriodOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    start: datetime = Field(serialization_alias="from", description="Inclusive.")
    end: datetime = Field(serialization_alias="to", description="Exclusive.")
    timezone: str = Field(description="The programme's time zone, of every local time here.")


class ReductionRowOut(BaseModel):
    month: str = Field(description="The local month, `YYYY-MM`.", examples=["2026-11"])
    region: str | None
    action_type: str
    partner_code: str
    partner_name: str
    credits: int
    grams: int
    points: int
    retracted: int = Field(description="Credits of events the partner retracted since.")
    retracted_grams: int


class ReductionTotalsOut(BaseModel):
    credits: int
    grams: int
    points: int
    retracted: int
    retracted_grams: int


class ReductionsOut(BaseModel):
    period: PeriodOut
    totals: ReductionTotalsOut
    rows: list[ReductionRowOut]


class PointsFlowsOut(BaseModel):
    issued: int
    redeemed: int
    refunded: int
    expired: int
    reversed: int
    debt_repaid: int
    expired_reclaimed: int = Field(
        description="Expired points taken back from the expiry account by reversals."
    )
    participants_net: int = Field(
        description="issued - redeemed + refunded - expired - reversed - debt_repaid."
    )


class LiabilityOut(BaseModel):
    outstanding: int = Field(description="Participants' posted points: what the programme owes.")
    held: int = Field(description="Of which held by redemptions in progress.")
    available: int
    debt: int = Field(description="Points participants owe (reversals of spent points).")
    holders: int = Field(description="Participants with a positive balance.")
    overdue: int = Field(description="Open points past their expiry, not yet expired by the job.")
    expiring_30_days: int = Field(description="Open points due within 30 days (overdue included).")
    expiring_90_days: int
    expiring_365_days: int


class PointsReportOut(BaseModel):
    period: PeriodOut
    as_of: datetime = Field(description="When the liability was read.")
    flows: PointsFlowsOut
    liability: LiabilityOut


class MerchantSettlementOut(BaseModel):
    merchant_id: uuid.UUID
    merchant_code: str
    merchant_name: str
    redemptions: int
    points_redeemed: int
    refunds: int
    points_refunded: int
    net_points: int
    value_fen: int


class SettlementTotalsOut(BaseModel):
    redemptions: int
    points_redeemed: int
    refunds: int
    points_refunded: int
    net_points: int
    value_fen: int


class SettlementReportOut(BaseModel):
    period: PeriodOut
    fen_per_point: int
    totals: SettlementTotalsOut
    merchants: list[MerchantSettlementOut]


class PartnerHourOut(BaseModel):
    hour: datetime = Field(description="The local hour's first instant.")
    events: int
    rejected: int
    outcomes: dict[str, int] = Field(description="The hour's events by their current outcome.")


class PartnerHealthOut(BaseModel):
    partner_code: str
    partner_name: str
    events: int
    outcomes: dict[str, int] = Field(description="Events by their current outcome.")
    rejected: int = Field(description="Ineligible, implausible, expired or duplicate.")
    active_hours: int = Field(description="Hours of the window with at least one event.")
    peak_hour_events: int
    hours: list[PartnerHourOut] = Field(description="Every hour with events, oldest first.")


class PartnerHealthReportOut(BaseModel):
    period: PeriodOut
    partners: list[PartnerHealthOut]
