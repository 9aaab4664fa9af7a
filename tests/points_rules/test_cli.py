"""The administrator CLI, called as the service will: main(argv_after_methodology)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from points_rules.cli import main

LIBRARY = Path(__file__).resolve().parents[2] / "points_rules" / "library"
BAD = Path(__file__).parent / "bad_documents"


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in LIBRARY.glob("*.yaml"))
    assert main(["validate", *files]) == 0
    out = capsys.readouterr()
    assert out.out.count("ok ") == len(files)
    assert out.err == ""


def test_validate_reports_pinpointed_errors(capsys: pytest.CaptureFixture[str]) -> None:
    good = str(LIBRARY / "transit.metro.yaml")
    assert main(["validate", good, str(BAD / "unit_mismatch.yaml")]) == 1
    err = capsys.readouterr().err
    assert "unit_mismatch.yaml:23:51: formula[0].expr: unit mismatch in '+': g vs m" in err


def test_validate_reports_overlaps_across_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    copy = tmp_path / "metro-v2.yaml"
    copy.write_text(
        (LIBRARY / "transit.metro.yaml").read_text().replace("version: 1", "version: 2")
    )
    assert main(["validate", str(LIBRARY / "transit.metro.yaml"), str(copy)]) == 1
    assert "overlaps transit.metro v1" in capsys.readouterr().err


def test_explain_prints_the_trace(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "explain",
            str(LIBRARY / "transit.metro.yaml"),
            "--input",
            "distance_m=12345",
            "--occurred-at",
            "2025-03-04T08:30:00+08:00",
            "--usage",
            "transit.daily=1800,1800",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "reduction = " in out
    assert "576.5115 g" in out
    assert "outcome: capped: 200 g CO2e, 200 points" in out
    assert "citysz.net" in out


def test_explain_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "explain",
            str(LIBRARY / "waste.sorting.yaml"),
            "--input",
            "weight_g=2500",
            "--input",
            "category=recyclable",
            "--occurred-at",
            "2025-03-04T08:30:00+08:00",
            "--json",
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["outcome"]["grams"], data["outcome"]["points"]) == (250, 250)


@pytest.mark.parametrize(
    "argv",
    [
        ["explain", str(LIBRARY / "transit.metro.yaml"), "--input", "nope=1"],
        ["explain", str(LIBRARY / "transit.metro.yaml"), "--input", "distance_m=abc"],
        ["explain", str(LIBRARY / "transit.metro.yaml"), "--occurred-at", "2025-03-04"],
        ["explain", str(LIBRARY / "transit.metro.yaml"), "--usage", "transit.daily=1"],
        ["explain", str(LIBRARY / "transit.metro.yaml"), "--usage", "unknown.cap=1,1"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err


def test_explain_invalid_file_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(BAD / "parse_error.yaml")]) == 1
    assert "parse_error.yaml:23:37" in capsys.readouterr().err
