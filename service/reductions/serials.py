"""Vintages and serial numbers: pure functions, no I/O.

One serial number is one kilogram of CO2e. Serials are one programme-wide sequence: a batch
takes the next `issued_grams / 1000` numbers, so two batches never share one. A block is
written `PROGRAMME/REGION/METHODOLOGY/VINTAGE/FIRST-LAST`, FIRST and LAST inclusive and
zero-padded to ten digits, e.g. `CP/CN-JX/transit.metro/2026-Q4/0000000001-0000003400`
(3,400 kg, 3.4 t). Grams short of a whole kilogram stay in the pool, carried to its next batch.
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from service.models import GRAMS_PER_SERIAL

PROGRAMME = "CP"
SERIAL_DIGITS = 10
VINTAGE_PATTERN = r"^[0-9]{4}(-Q[1-4]|-(0[1-9]|1[0-2]))?$"
_VINTAGE = re.compile(VINTAGE_PATTERN)

__all__ = [
    "GRAMS_PER_SERIAL",
    "PROGRAMME",
    "VINTAGE_PATTERN",
    "block_label",
    "kilograms",
    "serial",
    "vintage_period",
]


def vintage_period(vintage: str, tz: str) -> tuple[datetime, datetime]:
    """`2026` (a year), `2026-Q3` (a quarter) or `2026-07` (a month), in the programme's time
    zone: [start, end). Raises ValueError for anything else."""
    if not _VINTAGE.match(vintage):
        raise ValueError(
            f"vintage {vintage!r}: a year (2026), quarter (2026-Q3) or month (2026-07)"
        )
    zone = ZoneInfo(tz)
    year = int(vintage[:4])
    if len(vintage) == 4:
        first, months = 1, 12
    elif vintage[5] == "Q":
        first, months = (int(vintage[6]) - 1) * 3 + 1, 3
    else:
        first, months = int(vintage[5:7]), 1
    start = datetime(year, first, 1, tzinfo=zone)
    end_month = first + months
    end = (
        datetime(year + 1, end_month - 12, 1, tzinfo=zone)
        if end_month > 12
        else datetime(year, end_month, 1, tzinfo=zone)
    )
    return start, end


def serial(number: int) -> str:
    return f"{number:0{SERIAL_DIGITS}d}"


def block_label(region: str, methodology_id: str, vintage: str, first: int, last: int) -> str:
    return f"{PROGRAMME}/{region}/{methodology_id}/{vintage}/{serial(first)}-{serial(last)}"


def kilograms(first: int, last: int) -> int:
    return last - first + 1
