"""The formula language: parsing, unit algebra, safety, exact conversions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from points_rules._formula import FormulaError as FE
from points_rules._formula import (
    InputSymbol,
    NumType,
    ScalarSymbol,
    Symbol,
    TableSymbol,
    compile_expression,
)
from points_rules._units import DIMENSIONLESS, UnitError, conversion_factor, parse_unit

SYMBOLS: dict[str, Symbol] = {
    "distance_m": InputSymbol("number", parse_unit("m"), frozenset(), False),
    "duration_s": InputSymbol("number", parse_unit("s"), frozenset(), True),
    "category": InputSymbol("category", DIMENSIONLESS, frozenset({"a", "b"}), True),
    "flag": InputSymbol("boolean", DIMENSIONLESS, frozenset(), True),
    "factor": ScalarSymbol(Decimal("46.7"), parse_unit("g/km")),
    "table": TableSymbol({"a": Decimal(3), "b": Decimal(5)}, parse_unit("g/kg"), None),
}


def run(src: str, **env: object) -> object:
    return compile_expression(src, SYMBOLS).fn(dict(env))


def unit_of(src: str) -> str:
    t = compile_expression(src, SYMBOLS).type
    assert isinstance(t, NumType)
    return str(t.unit)


def test_unit_algebra() -> None:
    assert unit_of("convert(distance_m, km) * factor") == "g"
    assert unit_of("distance_m / duration_s") == "m/s"
    assert unit_of("convert(distance_m, km) / convert(duration_s, h)") == "km/h"
    assert unit_of("factor * 2") == "g/km"
    assert unit_of("lookup(table, category) * 2[kg]") == "g"


def test_arithmetic_precedence_and_exact_conversion() -> None:
    assert run("convert(distance_m, km) * factor", distance_m=Decimal(12345)) == Decimal("576.5115")
    assert run("1 + 2 * 3 - -4") == Decimal(11)
    assert run("(1 + 2) * 3") == Decimal(9)
    assert run("convert(2.5[kg], g)") == Decimal(2500)
    assert run("convert(1800[s], h)") == Decimal("0.5")


def test_functions_and_conditionals() -> None:
    assert run("min(3[g], 1[g], 2[g])") == 1
    assert run("max(3[g], 1[g])") == 3
    assert run("clamp(9[g], 0, 5[g])") == 5
    assert run("floor(2.7) + ceil(2.1) + round(2.5) + abs(-1)") == Decimal(8)
    assert run("if flag then 1[g] else 0", flag=True) == 1
    assert run("if flag then 1[g] else 0", flag=False) == 0
    assert run("lookup(table, category)", category="b") == 5
    assert run("has(distance_m) and distance_m > 0", distance_m=Decimal(1)) is True
    assert run("has(distance_m)") is False
    assert run("category == 'a' or not flag", category="b", flag=True) is False


def test_constants_are_folded_at_load_time() -> None:
    compiled = compile_expression("convert(2[km], m) * factor / 1000[m/km]", SYMBOLS)
    assert compiled.is_const
    assert compiled.const == Decimal("93.4")


@pytest.mark.parametrize(
    ("src", "offset", "fragment"),
    [
        ("distance_m + factor", 11, "unit mismatch in '+': m vs g/km"),
        ("convert(distance_m, km) * factor + distance_m", 33, "unit mismatch"),
        ("distance_m > 5", 11, "unit mismatch in comparison"),
        ("convert(distance_m, g)", 0, "different dimensions"),
        ("distance_m * * 2", 13, "unexpected '*'"),
        ("1 < 2 < 3", 6, "cannot be chained"),
        ("__import__('os')", 0, "unknown function '__import__'"),
        ("eval('1')", 0, "unknown function 'eval'"),
        ("distance_m.__class__", 10, "unexpected character '.'"),
        ("foo + 1", 0, "unknown name 'foo'"),
        ("category == 'c'", 12, "not one of the categories"),
        ("lookup(factor, category)", 7, "must be a table"),
        ("if distance_m then 1 else 2", 3, "true/false condition"),
        ("if flag then 1[g] else 1[km]", 23, "unit mismatch"),
        ("has(factor)", 4, "not one"),
        ("1 / 0", 2, "division by zero"),
        ("(1 + 2", 6, "expected ')'"),
        ("5[furlong]", 2, "unknown unit"),
        ("'unterminated", 0, "unterminated string"),
        ("min(1)", 0, "at least two"),
        ("flag and 1", 9, "'and' needs true/false"),
    ],
)
def test_errors_point_at_the_offending_token(src: str, offset: int, fragment: str) -> None:
    with pytest.raises(FE) as info:
        compile_expression(src, SYMBOLS)
    assert fragment in info.value.message
    assert info.value.offset == offset


def test_zero_literal_fits_any_unit() -> None:
    assert run("max(distance_m, 0)", distance_m=Decimal(-5)) == 0
    assert unit_of("if flag then factor else 0") == "g/km"


def test_units() -> None:
    assert parse_unit("kg/kWh") == parse_unit("kg / kWh")
    assert str(parse_unit("g*km/h^2")) == "g*km/h^2"
    assert parse_unit("1/trip") * parse_unit("trip") == DIMENSIONLESS
    assert parse_unit("dimensionless") == DIMENSIONLESS
    assert conversion_factor(parse_unit("km"), parse_unit("m")) == 1000
    assert conversion_factor(parse_unit("g/km"), parse_unit("kg/m")) * 1_000_000 == 1
    with pytest.raises(UnitError):
        parse_unit("g/km/h")
    with pytest.raises(UnitError):
        conversion_factor(parse_unit("km"), parse_unit("g"))
