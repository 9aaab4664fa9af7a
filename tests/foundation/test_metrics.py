"""The service's metrics: the outcomes and batches counted where they happen, the liability
and the outbox read from the database at a scrape, and a dashboard that names only real
metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

import service.metrics
import service.observability
from integrations import RateLimitedError
from service.config import Settings
from service.db import create_engine
from service.ledger import service as ledger
from tests.crediting.conftest import Live, live, metro

__all__ = ["live"]

ROOT = Path(__file__).resolve().parents[2]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_a_batch_is_counted_and_the_liability_read_at_the_scrape(live: Live) -> None:
    partner = await live.partner("metro-metrics")
    rider = await live.participant()
    await live.link(rider, partner, "card-m")
    async with httpx.AsyncClient(transport=live.transport, base_url="http://test") as http:
        before = _samples((await http.get("/metrics")).text)
        async with live.client(partner) as client:
            await client.submit_events(
                [metro(f"m{i}", card="card-m", quantities={"distance_m": 10_000}) for i in range(3)]
            )
        from service import metrics

        metrics._refreshed_at = 0.0  # read the database at this scrape
        after = _samples((await http.get("/metrics")).text)
    counted = _value(
        after, "carbon_points_event_outcomes_total", partner="metro-metrics", outcome="credited"
    ) - _value(
        before, "carbon_points_event_outcomes_total", partner="metro-metrics", outcome="credited"
    )
    assert counted == 3
    assert _value(after, "carbon_points_credited_grams_total", partner="metro-metrics") > 0
    assert _value(after, "carbon_points_crediting_batch_events_count") >= 1
    async with live.sessionmaker() as session:
        balance = await ledger.balance(session, rider)
    # The gauge is the whole programme's liability: at least this rider's points.
    assert _value(after, "carbon_points_points_liability", part="posted") >= balance.posted > 0
    assert ("carbon_points_webhook_outbox_pending", ()) in after
    assert ("carbon_points_webhook_dead_letters", ()) in after


async def test_the_pool_gauge_follows_the_connections_checked_out(test_settings: Settings) -> None:
    engine = create_engine(test_settings.database_url, pool_size=3)
    service.metrics.watch_pool(engine)

    def in_use() -> float:
        return REGISTRY.get_sample_value("carbon_points_db_connections_in_use") or 0.0

    try:
        before = in_use()
        async with engine.connect() as one, engine.connect() as two:
            await one.execute(text("SELECT 1"))
            await two.execute(text("SELECT 1"))
            assert in_use() == before + 2
        assert in_use() == before  # given back to the pool: no longer in use
    finally:
        await engine.dispose()


async def test_rate_limit_refusals_are_counted_per_partner(live: Live) -> None:
    from sqlalchemy import update

    from service.models import Partner

    slow = await live.partner("slow-metrics")
    async with live.sessionmaker() as session, session.begin():
        await session.execute(
            update(Partner).where(Partner.code == "slow-metrics").values(rate_limit_per_second=1)
        )
    live.app.state.partner_credentials.clear()

    def refused() -> float:
        sample = REGISTRY.get_sample_value(
            "carbon_points_rate_limited_total", {"partner": "slow-metrics"}
        )
        return sample or 0.0

    before = refused()
    statuses = []
    async with live.client(slow, max_retries=0) as client:
        for i in range(6):
            try:
                await client.submit_event(metro(f"rl{i}", card="card-rl"))
                statuses.append(200)
            except RateLimitedError:
                statuses.append(429)
    assert statuses.count(429) >= 3
    assert refused() - before == statuses.count(429)


def test_the_dashboard_names_only_real_metrics() -> None:
    known: set[str] = set()
    for family in REGISTRY.collect():
        if not family.name.startswith("carbon_points_"):
            continue
        base = family.name
        known |= {base, f"{base}_total", f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    dashboard = json.loads((ROOT / "docs" / "grafana" / "carbon-points.json").read_text())
    named = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"carbon_points_[a-z_]+", target["expr"])
    }
    assert named, "the dashboard queries nothing"
    assert named - known == set()
    # and every metric of ours is on the dashboard
    ours = {f.name for f in REGISTRY.collect() if f.name.startswith("carbon_points_")}
    charted = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in named}
    assert ours - charted == set()
