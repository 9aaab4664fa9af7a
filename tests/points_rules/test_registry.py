"""Registry: overlap rejection, version picking, region fallback, content hashes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from points_rules import (
    Action,
    MethodologyError,
    NoMethodologyError,
    Registry,
    parse_methodology,
)

CST = dt.timezone(dt.timedelta(hours=8))

DOC = """\
id: test.walk
version: {version}
title: Test walking
action_type: mobility.walk
region: {region}
scenario: reduction
effective_from: {start}
effective_to: {end}
claim_window_days: 2
parameters:
  per_step:
    value: {factor}
    unit: g/step
    source: "program choice: test"
inputs:
  steps:
    type: decimal
    unit: step
formula:
  - name: reduction
    expr: steps * per_step
    unit: g
result: reduction
points:
  per_gram: 1
"""


def doc(
    version: int = 1,
    start: str = "2025-01-01",
    end: str = "null",
    region: str = "null",
    factor: str = "0.02",
    ident: str = "test.walk",
) -> str:
    text = DOC.format(version=version, start=start, end=end, region=region, factor=factor)
    return text.replace("id: test.walk", f"id: {ident}")


def m(**kw: str | int):  # type: ignore[no-untyped-def]
    return parse_methodology(doc(**kw), f"v{kw.get('version', 1)}.yaml")  # type: ignore[arg-type]


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=CST)


def test_picks_the_version_in_force() -> None:
    v1 = m(version=1, end="2025-07-01")
    v2 = m(version=2, start="2025-07-01", factor="0.03")
    registry = Registry([v2, v1])
    assert registry.select("mobility.walk", at(2025, 6, 30, 23, 59, 59)) is v1
    assert registry.select("mobility.walk", at(2025, 7, 1)) is v2
    # 2025-06-30T16:00Z is 2025-07-01 00:00 in Asia/Shanghai
    assert registry.select("mobility.walk", dt.datetime(2025, 6, 30, 16, tzinfo=dt.UTC)) is v2
    with pytest.raises(NoMethodologyError):
        registry.select("mobility.walk", at(2024, 12, 31))
    with pytest.raises(NoMethodologyError):
        registry.select("transit.metro", at(2025, 3, 1))
    action = Action("mobility.walk", at(2025, 8, 1), at(2025, 8, 1), {"steps": Decimal(1000)})
    # 1000 steps x 0.03 g = 30 g under v2
    assert registry.evaluate(action).grams == 30
    assert registry.get("test.walk", 1) is v1
    assert registry.methodologies == (v1, v2)


def test_rejects_overlapping_periods() -> None:
    v1 = m(version=1, end="2025-07-01")
    v2 = m(version=2, start="2025-06-01")
    with pytest.raises(MethodologyError, match=r"overlaps test\.walk v1"):
        Registry([v1, v2])
    open_ended = m(version=1)
    with pytest.raises(MethodologyError, match="overlaps"):
        Registry([open_ended, m(version=2, start="2030-01-01")])


def test_same_period_in_different_regions_is_fine_and_falls_back() -> None:
    national = m(version=1)
    jiangxi = m(version=1, region="CN-JX", ident="test.walk.cn-jx", factor="0.05")
    registry = Registry([national, jiangxi])
    assert registry.select("mobility.walk", at(2025, 3, 1), "CN-JX") is jiangxi
    assert registry.select("mobility.walk", at(2025, 3, 1), "CN-JX-NC") is jiangxi
    assert registry.select("mobility.walk", at(2025, 3, 1), "CN-HB") is national
    assert registry.select("mobility.walk", at(2025, 3, 1)) is national


def test_same_id_and_version_with_different_content_is_rejected() -> None:
    with pytest.raises(MethodologyError, match="different content"):
        Registry([m(version=1, end="2025-02-01"), m(version=1, end="2025-02-01", factor="0.9")])
    same = m(version=1)
    assert len(Registry([same, m(version=1)]).methodologies) == 1


def test_content_hash_is_canonical() -> None:
    base = m()
    reformatted = parse_methodology("# a comment\n" + doc().replace("0.02", "0.020"))
    assert base.content_hash == reformatted.content_hash
    assert len(base.content_hash) == 64
    assert m(factor="0.021").content_hash != base.content_hash


def test_library_registry_is_consistent(registry: Registry) -> None:
    assert len(registry.methodologies) == 10
    for methodology in registry.methodologies:
        assert registry.get(methodology.id, methodology.version) is methodology
