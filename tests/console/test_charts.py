"""The charts' data shaped from reports (pure functions, no database)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from service.console import charts
from service.reports.schemas import (
    PartnerHealthOut,
    PartnerHealthReportOut,
    PartnerHourOut,
    PeriodOut,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_month_starts_cross_the_year() -> None:
    assert charts.month_starts(date(2026, 2, 17), 4) == [
        date(2025, 11, 1),
        date(2025, 12, 1),
        date(2026, 1, 1),
        date(2026, 2, 1),
    ]
    assert charts.next_month(date(2026, 12, 1)) == date(2027, 1, 1)


@given(
    now=st.integers(min_value=0, max_value=10**9),
    nets=st.lists(st.integers(min_value=-(10**6), max_value=10**6), min_size=1, max_size=24),
)
def test_outstanding_walks_back_from_now_by_each_later_months_net(
    now: int, nets: list[int]
) -> None:
    flows = [charts.MonthFlow(f"m{i}", max(n, 0), 0, 0, n) for i, n in enumerate(nets)]
    series = charts.outstanding_by_month(now, flows)["outstanding"]
    assert series[-1] == now
    for i in range(1, len(series)):
        assert series[i] - series[i - 1] == nets[i]  # each month end adds that month's net


def test_events_by_hour_sums_partners_into_the_local_hours() -> None:
    def hour(h: int, events: int, rejected: int) -> PartnerHourOut:
        return PartnerHourOut(
            hour=datetime(2026, 12, 3, h, tzinfo=SHANGHAI),
            events=events,
            rejected=rejected,
            outcomes={},
        )

    def partner(code: str, *hours: PartnerHourOut) -> PartnerHealthOut:
        return PartnerHealthOut(
            partner_code=code,
            partner_name=code,
            events=sum(h.events for h in hours),
            outcomes={},
            rejected=sum(h.rejected for h in hours),
            active_hours=len(hours),
            peak_hour_events=max(h.events for h in hours),
            hours=list(hours),
        )

    period = PeriodOut(
        start=datetime(2026, 12, 3, tzinfo=SHANGHAI),
        end=datetime(2026, 12, 4, tzinfo=SHANGHAI),
        timezone="Asia/Shanghai",
    )
    report = PartnerHealthReportOut(
        period=period,
        partners=[
            partner("a", hour(0, 3, 1), hour(8, 10, 0)),
            partner("b", hour(8, 5, 2), hour(23, 1, 0)),
        ],
    )
    shaped = charts.events_by_hour(report)
    assert shaped["labels"][0] == "00:00" and shaped["labels"][23] == "23:00"
    assert shaped["events"][0] == 3 and shaped["events"][8] == 15 and shaped["events"][23] == 1
    assert shaped["rejected"][8] == 2 and sum(shaped["events"]) == 19
