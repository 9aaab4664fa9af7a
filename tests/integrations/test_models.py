"""Events are checked before sending and serialised exactly; outcomes parse forward-compatibly."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from integrations import InvalidEventError, Outcome, OutcomeStatus
from integrations._models import encode_json
from tests.integrations.fakes import SUBJECT_REF, make_event, outcome_json


def test_float_quantity_is_rejected_with_a_clear_error() -> None:
    with pytest.raises(InvalidEventError, match=r"'distance_m' is a float.*Decimal"):
        make_event(quantities={"distance_m": 12.5})


@pytest.mark.parametrize(
    "value", [None, [1], Decimal("NaN"), Decimal("Infinity"), " 1", "nan", "", "x" * 65]
)
def test_other_inexact_or_odd_quantities_are_rejected(value: Any) -> None:
    with pytest.raises(InvalidEventError, match="distance_m"):
        make_event(quantities={"distance_m": value})


def test_categories_and_flags_pass_through() -> None:
    event = make_event(quantities={"category": "recyclables", "weight_g": 1200, "navigated": True})
    assert event.to_json()["quantities"] == {
        "category": "recyclables",
        "weight_g": 1200,
        "navigated": True,
    }


def test_decimals_travel_as_exact_strings() -> None:
    event = make_event(
        quantities={
            "distance_km": Decimal("12.5"),
            "fare_yuan": Decimal("3.10"),
            "big": Decimal("1E+3"),
            "tiny": Decimal("0.1000000000000000055511151231257827"),
            "as_text": "7.25",
            "steps": 10**20,
        }
    )
    sent = json.loads(encode_json(event.to_json()))["quantities"]
    assert sent == {
        "distance_km": "12.5",
        "fare_yuan": "3.10",
        "big": "1000",
        "tiny": "0.1000000000000000055511151231257827",
        "as_text": "7.25",
        "steps": 100000000000000000000,
    }


def test_naive_datetime_is_rejected() -> None:
    with pytest.raises(InvalidEventError, match="timezone-aware"):
        make_event(occurred_at=dt.datetime(2026, 1, 1, 8, 30))


def test_occurred_at_is_rfc3339_with_offset() -> None:
    utc = make_event(occurred_at=dt.datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=dt.UTC))
    assert utc.to_json()["occurred_at"] == "2026-01-01T00:00:00.250000+00:00"
    assert make_event().to_json()["occurred_at"] == "2026-01-01T08:30:00+08:00"


@pytest.mark.parametrize("external_id", ["", "a" * 129, "has space", "slash/y", "中文", 42])
def test_bad_external_ids_are_rejected(external_id: Any) -> None:
    with pytest.raises(InvalidEventError, match="external_id"):
        make_event(external_id=external_id)


def test_external_id_edges_are_accepted() -> None:
    assert make_event(external_id="a" * 128).external_id == "a" * 128
    assert make_event(external_id="A.b_c:d-9").external_id == "A.b_c:d-9"


def test_optional_fields_are_sent_only_when_set() -> None:
    assert "region" not in make_event().to_json()
    event = make_event(region="CN-44-0300", place_ids=["st_1", "st_2"])
    assert event.to_json()["region"] == "CN-44-0300"
    assert event.to_json()["place_ids"] == ["st_1", "st_2"]
    with pytest.raises(InvalidEventError, match="place_ids"):
        make_event(place_ids="st_1")


def test_subject_ref_stays_out_of_repr_and_errors() -> None:
    event = make_event()
    assert SUBJECT_REF not in repr(event)
    for bad in ({"quantities": {"d": 1.5}}, {"occurred_at": dt.datetime(2026, 1, 1)}):
        with pytest.raises(InvalidEventError) as caught:
            make_event(**bad)
        assert SUBJECT_REF not in str(caught.value)


def test_events_are_immutable_and_copy_their_inputs() -> None:
    quantities: dict[str, Any] = {"distance_m": 1}
    event = make_event(quantities=quantities)
    quantities["distance_m"] = 2.5
    assert event.quantities == {"distance_m": 1}
    with pytest.raises(AttributeError):
        event.external_id = "other"  # type: ignore[misc]
    assert len({event, make_event(quantities={"distance_m": 1}), make_event(2)}) == 2


def test_outcome_tolerates_unknown_fields_and_statuses() -> None:
    outcome = Outcome.model_validate(
        outcome_json("e1", status="escrowed", reasons=[{"code": "cap.daily", "message": "m"}])
        | {"new_field": {"x": 1}}
    )
    assert outcome.status == "escrowed"
    assert outcome.model_extra == {"new_field": {"x": 1}}
    assert outcome.reasons[0].code == "cap.daily"
    assert outcome.received_at == dt.datetime(2026, 1, 1, 0, 0, 1, tzinfo=dt.UTC)


def test_outcome_status_constants_compare_to_plain_strings() -> None:
    outcome = Outcome.model_validate(outcome_json("e1", status="capped"))
    assert outcome.status == OutcomeStatus.CAPPED
    assert {s.value for s in OutcomeStatus} == {
        "credited",
        "capped",
        "pending",
        "ineligible",
        "implausible",
        "expired",
        "duplicate",
        "conflict",
        "rejected",
        "retracted",
    }
