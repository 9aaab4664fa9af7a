"""The charts' data, shaped from the reports and the back-test (pure: no I/O). Quantities stay
integers (grams, points); the page's script only scales them for the axes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from service.admin.schemas import BacktestOut
from service.reports.schemas import PartnerHealthReportOut, ReductionsOut


def month_starts(today: date, months: int) -> list[date]:
    """The first days of the last `months` local months, oldest first, this month last."""
    firsts = [today.replace(day=1)]
    while len(firsts) < months:
        previous = firsts[-1] - timedelta(days=1)
        firsts.append(previous.replace(day=1))
    return list(reversed(firsts))


def next_month(first: date) -> date:
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def reductions_by_month(report: ReductionsOut, months: Sequence[date]) -> dict[str, Any]:
    """Grams credited per local month (every month of the window, zero where none)."""
    labels = [m.strftime("%Y-%m") for m in months]
    grams = dict.fromkeys(labels, 0)
    for row in report.rows:
        if row.month in grams:
            grams[row.month] += row.grams - row.retracted_grams
    return {"labels": labels, "grams": [grams[label] for label in labels]}


@dataclass(frozen=True, slots=True)
class MonthFlow:
    month: str
    issued: int
    redeemed: int
    expired: int
    net: int  # the participants' net: what the month added to the points outstanding


def outstanding_by_month(outstanding_now: int, flows: Sequence[MonthFlow]) -> dict[str, Any]:
    """Points outstanding at the end of each month (the last is now), walked back from the
    liability now by each later month's net flow; with the month's issued, redeemed and
    expired points."""
    at_end: list[int] = []
    level = outstanding_now
    for flow in reversed(flows):
        at_end.append(level)
        level -= flow.net
    at_end.reverse()
    return {
        "labels": [f.month for f in flows],
        "outstanding": at_end,
        "issued": [f.issued for f in flows],
        "redeemed": [f.redeemed for f in flows],
        "expired": [f.expired for f in flows],
    }


def events_by_hour(report: PartnerHealthReportOut) -> dict[str, Any]:
    """Today's events per local hour, every partner together, hours 00-23."""
    events = [0] * 24
    rejected = [0] * 24
    for partner in report.partners:
        for hour in partner.hours:
            events[hour.hour.hour] += hour.events
            rejected[hour.hour.hour] += hour.rejected
    return {
        "labels": [f"{h:02d}:00" for h in range(24)],
        "events": events,
        "rejected": rejected,
    }


def backtest_distribution(result: BacktestOut) -> dict[str, Any]:
    """Points (and grams) under the version in force and under the draft, per action type,
    region and stored status: the old and the new distribution side by side."""
    groups = [g for g in result.groups if g.events]
    return {
        "labels": [
            " / ".join(part for part in (g.action_type, g.region or "*", g.status)) for g in groups
        ],
        "points_in_force": [g.points_in_force for g in groups],
        "points_draft": [g.points_draft for g in groups],
        "grams_in_force": [g.grams_in_force for g in groups],
        "grams_draft": [g.grams_draft for g in groups],
    }
