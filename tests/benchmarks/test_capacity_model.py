"""The capacity model's arithmetic (benchmarks/capacity_model.py `model`), on a small fixed
measurement: no servers, no timing; every expected figure is worked out by hand here."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks.capacity_model import (
    SECONDS_PER_YEAR,
    Assumptions,
    model_main,
    need,
    parse_args,
    per_event,
    render,
)


def _phase(api_ms: float, pg_ms: float) -> dict[str, Any]:
    return {
        "per_event": {
            "api_cpu_s": api_ms / 1000,
            "pg_cpu_s": pg_ms / 1000,
            "redis_cpu_s": 0.000_01,
            "wal_bytes": 5_000,
            "table_bytes": {"partner_events": 600, "credits": 400},
            "client_bytes": 300,
            "pg_network_bytes": 2_000,
            "redis_network_bytes": 50,
        }
    }


MEASURED: dict[str, Any] = {
    "measured_at": "2026-12-03 20:00 UTC",
    "machine": "a test machine",
    "command": "benchmarks/capacity_model.py measure",
    "phases": {"batched": _phase(0.5, 1.0), "single": _phase(5.0, 4.0)},
}


def test_the_needs_follow_from_the_costs_and_the_assumptions() -> None:
    cost = per_event(MEASURED, "batched")
    assert cost.storage_bytes == 1_000
    a = Assumptions()  # API 60 % busy; 32-core nodes 50 % busy; 1 standby; 24 months
    n = need(100_000, cost, a)
    assert n.api_cores == pytest.approx(50.0)  # 100,000/s x 0.5 ms
    assert n.api_cores_provisioned == 84  # ceil(50 / 0.6)
    assert n.pg_cores == pytest.approx(100.0)  # 100,000/s x 1 ms
    assert n.pg_nodes_for_cpu == 7  # ceil(100 / (32 x 0.5))
    # 24 months attached, one copy: 2 x 100,000 x 1,000 B x 31,536,000 s = 6,307 TB; 8 TB each.
    assert n.pg_nodes_for_storage == math.ceil(2 * 100_000 * 1_000 * SECONDS_PER_YEAR / 8e12)
    assert n.pg_nodes == n.pg_nodes_for_storage == 789
    assert n.shards == 4096  # 789 x 4 = 3,156 -> the next power of two
    assert n.redis_cores == pytest.approx(1.0)
    assert n.redis_masters == 2  # ceil(1 / 0.5)
    assert n.storage_per_year_bytes == pytest.approx(100_000 * 1_000 * SECONDS_PER_YEAR)
    assert n.storage_hot_bytes == pytest.approx(n.storage_per_year_bytes * 2 * 2)
    assert n.wal_bytes_per_s == pytest.approx(5e8)
    assert n.wal_per_day_bytes == pytest.approx(5e8 * 86_400)
    assert n.client_bits_per_s == pytest.approx(8 * 100_000 * 300)
    # API <-> PostgreSQL, plus the WAL streamed to one standby.
    assert n.pg_network_bits_per_s == pytest.approx(8 * (100_000 * 2_000 + 5e8))
    assert n.redis_network_bits_per_s == pytest.approx(8 * 100_000 * 50)


def test_small_rates_need_at_least_one_of_each_and_shards_grow_by_powers_of_two() -> None:
    single = per_event(MEASURED, "single")
    small = need(10, single, Assumptions())
    assert (small.api_cores_provisioned, small.pg_nodes, small.redis_masters) == (1, 1, 1)
    assert small.shards == 32  # at least citus.shard_count's default
    # Storage out of the way (a year's 100,000/s on 10,000 TB a node): CPU decides.
    big = need(
        100_000, single, Assumptions(pg_node_cores=16, pg_utilisation=0.5, pg_node_storage_tb=1e4)
    )
    assert (big.pg_nodes_for_cpu, big.pg_nodes_for_storage) == (math.ceil(400 / 8), 1)
    assert big.pg_nodes == 50
    assert big.shards == 256  # 50 x 4 = 200 -> the next power of two
    yearly = need(1_000, single, Assumptions(load_factor=0.25, hot_months=6, standbys=2))
    assert yearly.storage_per_year_bytes == pytest.approx(1_000 * 0.25 * SECONDS_PER_YEAR * 1e3)
    assert yearly.storage_hot_bytes == pytest.approx(yearly.storage_per_year_bytes * 0.5 * 3)


def test_the_model_command_prints_the_tables_and_the_assumptions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "capacity.json"
    path.write_text(json.dumps(MEASURED))
    model_main(parse_args(["model", str(path), "--rates", "1000", "--pg-node-cores", "16"]))
    out = capsys.readouterr().out
    assert "| API cores busy | 0.5 |" in out  # batched: 1,000/s x 0.5 ms
    assert "| API cores busy | 5.0 |" in out  # single: 1,000/s x 5 ms
    assert "| nodes for CPU (16 cores, 50% busy) | 1 |" in out
    assert "| nodes for storage (8 TB attached each) | 8 |" in out  # 63 TB attached / 8 TB
    assert "pg_node_cores=16" in out
    assert "| `partner_events` | 600 | 600 |" in out
    assert "31.5 TB" in out  # 1,000/s x 1,000 B x 31,536,000 s
    model_main(parse_args(["model", str(path), "--rates", "1000", "--json"]))
    figures = json.loads(capsys.readouterr().out)
    assert figures["needs"]["batched"][0]["pg_cores"] == pytest.approx(1.0)
    assert figures["assumptions"]["pg_node_cores"] == 32
    assert render(MEASURED, Assumptions(), [1.0]).count("|---|") >= 4
