"""Hostile YAML: whatever text or bytes reach the engine (an upload, a file handed to the
CLI), the answer is a document or a MethodologyError naming where, never another exception,
never a stack trace at the CLI, and never a wait without end."""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from points_rules import MethodologyError, load_methodology, parse_methodology
from points_rules.cli import main

LIBRARY = Path(__file__).resolve().parents[2] / "points_rules" / "library"
METRO = (LIBRARY / "transit.metro.yaml").read_text(encoding="utf-8")

# name -> (the file's bytes, the message, the line and column it must name or None)
HOSTILE: dict[str, tuple[bytes, str, tuple[int, int] | None]] = {
    "flow nesting without end": (b"[" * 20_000, "nested too deeply", (1, 65)),
    "block nesting without end": (
        "".join("  " * i + f"k{i}:\n" for i in range(3_000)).encode(),
        "nested too deeply",
        (65, 129),
    ),
    "an alias of itself": (b"a: &x [*x]\n", "contains it", (1, 4)),
    "aliases that expand to billions": (
        (
            'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
            + "".join(
                f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n"
                for i in range(8)
            )
        ).encode(),
        "more than 100,000 values",
        None,
    ),
    "a chain of aliases deeper than any document": (
        "".join(
            f"a{i}: &a{i} [" + (f"*a{i - 1}" if i else "1") + "]\n" for i in range(2_000)
        ).encode(),
        "nested too deeply",
        None,
    ),
    "a list at the root": (b"- 1\n- 2\n", "must be a mapping", (1, 1)),
    "a scalar at the root": (b"just text\n", "must be a mapping", (1, 1)),
    "a python tag": (b'!!python/object/apply:os.system ["echo hi"]\n', "mapping", (1, 1)),
    "binary": (bytes(range(256)) * 4, "not UTF-8", (2, 118)),
    "latin-1 text": ("id: caf\u00e9\n".encode("latin-1"), "not UTF-8", (1, 8)),
    "a NUL character": (b"id: a\x00b\n", "U+0000 is not allowed", (1, 6)),
    "two documents": (b"a: 1\n---\nb: 2\n", "another document", (2, 1)),
    "empty": (b"", "empty document", None),
    "an integer of 5,000 digits": (
        b"version: " + b"9" * 5_000 + b"\n",
        "not a valid integer",
        (1, 10),
    ),
    "an impossible date": (b"effective_from: 2025-02-30\n", "day is out of range", (1, 17)),
    "a factor beyond any range": (
        METRO.replace("value: 46.7", "value: 1e999999999").encode(),
        "a number between",
        None,
    ),
    "a claim window beyond any date": (
        METRO.replace("claim_window_days: 7", "claim_window_days: 99999999999999999999").encode(),
        "less than or equal to 36500",
        None,
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_input_is_a_clean_problem_at_the_cli(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content, message, where = HOSTILE[case]
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content)
    with pytest.raises(MethodologyError) as raised:
        load_methodology(path)
    assert any(message in p.message for p in raised.value.problems), raised.value
    if where is not None:
        assert (raised.value.problems[0].line, raised.value.problems[0].column) == where

    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith(str(path))
    if where is not None:
        assert err.startswith(f"{path}:{where[0]}:{where[1]}: ")
    assert main(["explain", str(path), "--input", "distance_m=1000"]) == 1
    assert "Traceback" not in capsys.readouterr().err


def _refusal(load: Callable[[], object]) -> MethodologyError | None:
    """The MethodologyError `load` raised, or None; any other exception fails the test."""
    try:
        load()
    except MethodologyError as error:
        return error
    return None


_YAMLISH = st.text(alphabet=string.printable + "&*!|>{}[]-:?,'\"#%@`\u00e9\u4e2d", max_size=300)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_YAMLISH)
def test_any_text_is_a_document_or_a_methodology_error(text: str) -> None:
    error = _refusal(lambda: parse_methodology(text, "fuzz.yaml"))
    assert error is None or error.problems


@settings(max_examples=300, deadline=None)
@given(
    at=st.integers(min_value=0, max_value=len(METRO)),
    cut=st.integers(min_value=0, max_value=40),
    insert=_YAMLISH.map(lambda s: s[:30]),
)
def test_any_edit_of_a_real_document_is_a_document_or_a_methodology_error(
    at: int, cut: int, insert: str
) -> None:
    text = METRO[:at] + insert + METRO[at + cut :]
    error = _refusal(lambda: parse_methodology(text, "edited.yaml"))
    assert error is None or error.problems


@settings(max_examples=100, deadline=None)
@given(content=st.binary(max_size=400))
def test_any_bytes_are_a_document_or_a_methodology_error(
    content: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("bytes") / "file.yaml"
    path.write_bytes(content)
    error = _refusal(lambda: load_methodology(path))
    assert error is None or error.problems
