"""Long jobs show a progress bar on stderr, only where someone watches: never with
`--no-progress`, never when stderr is not a terminal (cron, a pipe, a log file)."""

from __future__ import annotations

import argparse
import io
import sys
import time

import pytest

from service.cli import build_parser
from service.command_runtime import progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run_a_job(args: argparse.Namespace) -> None:
    with progress_bar("expiring lots", args) as advance:
        for done in range(1, 4):
            advance(done * 500, None)
            time.sleep(0.05)


def test_a_terminal_sees_the_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    _run_a_job(argparse.Namespace(no_progress=False))
    assert "expiring lots" in terminal.getvalue()


def test_no_progress_silences_it(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    _run_a_job(argparse.Namespace(no_progress=True))
    assert terminal.getvalue() == ""


def test_no_terminal_no_bar(capsys: pytest.CaptureFixture[str]) -> None:
    _run_a_job(argparse.Namespace(no_progress=False))
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    "argv",
    [
        ["ledger", "verify"],
        ["ledger", "expire"],
        ["redemptions", "expire-holds"],
        ["crediting", "expire-pending"],
    ],
)
def test_every_long_job_takes_no_progress_and_json(argv: list[str]) -> None:
    args = build_parser().parse_args([*argv, "--no-progress", "--json"])
    assert args.no_progress and args.as_json


def test_ledger_void_overdue_holds_still_runs_the_job_now_in_redemption(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from service.cli import main

    with pytest.raises(SystemExit):
        main(["ledger", "void-overdue-holds", "--help"])
    assert "redemption.expired" in capsys.readouterr().out
