"""Every malformed document gets a precise error: file, field path, and line:column."""

from __future__ import annotations

from pathlib import Path

import pytest

from points_rules import MethodologyError, load_methodology, parse_methodology

BAD = Path(__file__).parent / "bad_documents"

# file -> (field path, line, column, message fragment); positions checked by hand in the files
EXPECTED: dict[str, tuple[str, int, int, str]] = {
    "unit_mismatch.yaml": ("formula[0].expr", 23, 51, "unit mismatch in '+': g vs m"),
    "adds_grams_to_km_block.yaml": ("formula[0].expr", 25, 9, "unit mismatch in '+': g vs km"),
    "unknown_name.yaml": ("formula[0].expr", 23, 37, "unknown name 'saving_per_kn'"),
    "parse_error.yaml": ("formula[0].expr", 23, 37, "unexpected '*'"),
    "missing_points.yaml": ("points", 1, 1, "required field is missing"),
    "unknown_field.yaml": ("parameters.saving_per_km.factr", 12, 12, "unknown field"),
    "unsourced_parameter.yaml": ("parameters.saving_per_km", 10, 5, "program choice"),
    "bad_unit.yaml": ("parameters.saving_per_km.unit", 11, 11, "unknown unit 'furlong'"),
    "result_not_grams.yaml": ("result", 25, 9, "must be in g"),
    "declared_unit_mismatch.yaml": ("formula[0].unit", 24, 11, "the formula gives g*m/km"),
    "duplicate_key.yaml": ("parameters.saving_per_km.year", 15, 5, "duplicate key"),
    "infinite_value.yaml": ("parameters.saving_per_km.value", 10, 12, "not a finite number"),
    "rounding_up.yaml": ("points.rounding", 28, 13, "'down'"),
    "effective_to_before_from.yaml": ("effective_to", 7, 15, "must be after"),
    "cap_group_without_self.yaml": ("caps[0].group", 32, 12, "must include this action type"),
    "comparison_in_rule_not_bool.yaml": ("eligibility[0].require", 17, 14, "true/false"),
    "lookup_uncovered_category.yaml": ("formula[0].expr", 30, 69, "no entry for 'kitchen'"),
    "yaml_syntax.yaml": ("", 3, 8, "YAML syntax"),
    "string_version.yaml": ("version", 2, 10, "valid integer"),
}


def test_corpus_is_fully_covered() -> None:
    assert sorted(p.name for p in BAD.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_document_gets_precise_error(name: str) -> None:
    path, line, column, fragment = EXPECTED[name]
    with pytest.raises(MethodologyError) as info:
        load_methodology(BAD / name)
    problems = info.value.problems
    # exactly one problem: follow-on errors from the same mistake are not repeated
    assert len(problems) == 1, [str(p) for p in problems]
    problem = problems[0]
    assert problem.file.endswith(name)
    assert (problem.path, problem.line, problem.column) == (path, line, column), str(problem)
    assert fragment in problem.message
    assert str(problem).startswith(f"{problem.file}:{line}:{column}: ")


def test_several_problems_are_all_reported() -> None:
    text = (BAD / "unit_mismatch.yaml").read_text().replace("unit: g/km", "unit: g/furlong")
    text = text.replace("max: 200000", "max: 200000\n    bogus: 1")
    with pytest.raises(MethodologyError) as info:
        parse_methodology(text, "two.yaml")
    paths = {p.path for p in info.value.problems}
    assert "inputs.distance_m.bogus" in paths


def test_unreadable_file() -> None:
    with pytest.raises(MethodologyError, match="cannot read"):
        load_methodology(BAD / "does-not-exist.yaml")


def test_numbers_are_exact_decimals_not_floats() -> None:
    text = (
        (BAD / "unit_mismatch.yaml")
        .read_text()
        .replace(
            "expr: convert(distance_m, km) * saving_per_km + distance_m",
            "expr: convert(distance_m, km) * saving_per_km",
        )
        .replace("value: 46.7", "value: 0.1000000000000000055511151231257827")
    )
    m = parse_methodology(text)
    value = m.doc.parameters["saving_per_km"].value
    assert str(value) == "0.1000000000000000055511151231257827"
