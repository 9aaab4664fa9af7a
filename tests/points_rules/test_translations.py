"""Methodology documents in a second language: optional, validated, outside the content hash."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from points_rules import (
    Action,
    MethodologyError,
    evaluate,
    explain,
    load_library,
    parse_methodology,
)

LIBRARY = Path(__file__).parents[2] / "points_rules" / "library"
METRO = (LIBRARY / "transit.metro.yaml").read_text(encoding="utf-8")
UNTRANSLATED = METRO[: METRO.index("\n# Reader-facing text in Chinese")] + "\n"
AT = dt.datetime(2025, 6, 1, 8, tzinfo=dt.UTC)


def test_every_shipped_methodology_has_a_chinese_title_and_rule_messages() -> None:
    for m in load_library():
        assert m.title_in("zh-CN") != m.title, m.id
        codes = {c.code for c in (*m.plausibility, *m.eligibility)}
        assert set(m.doc.translations["zh-CN"].messages) == codes, m.id
        if m.doc.description:
            assert m.description_in("zh-CN") != m.doc.description, m.id


def test_a_document_without_translations_loads_and_shows_its_own_words() -> None:
    m = parse_methodology(UNTRANSLATED, "metro.yaml")
    assert m.title_in("zh-CN") == m.title == "Metro trip (national default)"
    assert m.message_in("trip_too_short", "x", "zh-CN") == "x"


def test_translations_are_not_content() -> None:
    translated = parse_methodology(METRO, "metro.yaml")
    plain = parse_methodology(UNTRANSLATED, "metro.yaml")
    assert translated.content_hash == plain.content_hash
    assert translated.title_in("zh-CN") == "地铁出行（全国默认）"
    assert translated.title_in("en") == plain.title


def test_a_translated_message_must_name_a_rule_of_the_document() -> None:
    broken = METRO.replace("      trip_too_short:", "      no_such_rule:")
    with pytest.raises(MethodologyError, match="no_such_rule"):
        parse_methodology(broken, "metro.yaml")


def test_engine_reasons_carry_a_template_and_parameters() -> None:
    m = parse_methodology(METRO, "metro.yaml")
    late = Action("transit.metro", AT, AT + dt.timedelta(days=30), {"distance_m": Decimal(9000)})
    (reason,) = evaluate(m, late).reasons
    assert reason.template is not None
    assert reason.template % dict(reason.params) == reason.message
    assert dict(reason.params)["days"] == "7"


def test_the_explanation_text_takes_a_translation_hook() -> None:
    m = parse_methodology(METRO, "metro.yaml")
    action = Action("transit.metro", AT, AT, {"distance_m": Decimal(9000)})
    words = {
        "inputs:": "输入：",
        "outcome: %(status)s: %(grams)s g CO2e, %(points)s points": (
            "结果：%(status)s，%(grams)s 克，%(points)s 积分"
        ),
        "credited": "已计入",
    }
    text = explain(m, action).render_text(lambda msgid: words.get(msgid, msgid))
    assert "输入：" in text
    assert "结果：已计入，420 克，420 积分" in text
    assert explain(m, action).render_text() == str(explain(m, action))
