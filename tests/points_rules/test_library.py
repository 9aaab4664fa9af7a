"""The shipped library: validates, covers the eight action types, cites every parameter."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from points_rules import Registry, load_library

ACTION_TYPES = {
    "transit.metro",
    "transit.bus",
    "mobility.bikeshare",
    "mobility.walk",
    "waste.sorting",
    "purchase.green_product",
    "purchase.secondhand",
    "energy.electricity_saving",
}


def test_library_validates_and_covers_the_action_types(registry: Registry) -> None:
    library = load_library()
    assert {m.action_type for m in library} == ACTION_TYPES
    now = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    for action_type in ACTION_TYPES:
        assert registry.select(action_type, now).region is None  # a national default exists


def test_every_parameter_cites_a_source_or_is_a_program_choice() -> None:
    for m in load_library():
        for name, p in m.doc.parameters.items():
            where = f"{m.file}: {name}"
            assert p.source.strip(), where
            if p.program_choice:
                continue
            assert p.region, where
            assert "year" in p.model_fields_set, where
            # a cited figure appears verbatim in its citation, so a reviewer can match it
            assert p.value is not None, where
            assert format(p.value.normalize(), "f") in p.source, where


def test_reduction_scenarios_use_one_point_per_gram_and_behaviour_no_grams() -> None:
    for m in load_library():
        if m.scenario == "reduction":
            assert m.points_per_gram == Decimal(1)
        else:
            assert m.result is None
            assert m.fixed_points


def test_regional_overrides() -> None:
    by_region = {(m.action_type, m.region): m for m in load_library()}
    jx = by_region[("energy.electricity_saving", "CN-JX")]
    national = by_region[("energy.electricity_saving", None)]
    assert jx.doc.parameters["grid_factor"].value == Decimal("0.5395")
    assert national.doc.parameters["grid_factor"].value == Decimal("0.5366")
    assert ("transit.metro", "CN-HB-WH") in by_region


def test_waste_factor_is_marked_as_a_program_choice() -> None:
    waste = next(m for m in load_library() if m.action_type == "waste.sorting")
    assert waste.doc.parameters["factor"].program_choice
