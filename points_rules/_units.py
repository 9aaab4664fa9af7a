"""Units of measure for methodology parameters, inputs and formula values.

A unit is a product of atomic units with integer exponents (``g/km`` is ``g^1 km^-1``). Units are
kept symbolic: ``m`` and ``km`` are different units of the same dimension, and the formula
language only converts between them when the author writes ``convert(x, km)``. That keeps every
conversion visible in the document and exact in Decimal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

__all__ = ["DIMENSIONLESS", "Unit", "UnitError", "conversion_factor", "parse_unit"]


class UnitError(ValueError):
    """A unit string cannot be parsed, or two units cannot be converted into each other."""


# atomic unit -> (dimension, size in the dimension's base unit, as an exact fraction)
_ATOMIC: dict[str, tuple[str, Fraction]] = {
    "g": ("mass", Fraction(1)),
    "kg": ("mass", Fraction(1000)),
    "t": ("mass", Fraction(1_000_000)),
    "m": ("length", Fraction(1)),
    "km": ("length", Fraction(1000)),
    "s": ("time", Fraction(1)),
    "min": ("time", Fraction(60)),
    "h": ("time", Fraction(3600)),
    "d": ("time", Fraction(86400)),
    "Wh": ("energy", Fraction(1)),
    "kWh": ("energy", Fraction(1000)),
    "MWh": ("energy", Fraction(1_000_000)),
    "trip": ("trip", Fraction(1)),
    "step": ("step", Fraction(1)),
    "item": ("item", Fraction(1)),
    "points": ("points", Fraction(1)),
}

_DIMENSIONLESS_NAMES = frozenset({"1", "dimensionless", "count", ""})
_TERM = re.compile(r"^([A-Za-z]+)(?:\^(-?[0-9]+))?$")


@dataclass(frozen=True, slots=True)
class Unit:
    """A product of atomic units with integer exponents, in canonical (sorted) order."""

    terms: tuple[tuple[str, int], ...]

    def __mul__(self, other: Unit) -> Unit:
        return _make({**_as_dict(self)}, other, 1)

    def __truediv__(self, other: Unit) -> Unit:
        return _make({**_as_dict(self)}, other, -1)

    @property
    def is_dimensionless(self) -> bool:
        """True when the unit has no atomic terms (a pure number)."""
        return not self.terms

    def dimensions(self) -> tuple[tuple[str, int], ...]:
        """The unit's dimension vector, e.g. ``g/km`` -> mass^1 length^-1."""
        dims: dict[str, int] = {}
        for symbol, exp in self.terms:
            dim = _ATOMIC[symbol][0]
            dims[dim] = dims.get(dim, 0) + exp
        return tuple(sorted((d, e) for d, e in dims.items() if e))

    def scale(self) -> Fraction:
        """Size of this unit in the base units of its dimensions (``km/h`` -> 1000/3600)."""
        result = Fraction(1)
        for symbol, exp in self.terms:
            result *= _ATOMIC[symbol][1] ** exp
        return result

    def __str__(self) -> str:
        num = [_fmt(s, e) for s, e in self.terms if e > 0]
        den = [_fmt(s, -e) for s, e in self.terms if e < 0]
        if not num and not den:
            return "1"
        text = "*".join(num) if num else "1"
        if den:
            text += "/" + ("*".join(den) if len(den) == 1 else "(" + "*".join(den) + ")")
        return text


def _fmt(symbol: str, exp: int) -> str:
    return symbol if exp == 1 else f"{symbol}^{exp}"


def _as_dict(unit: Unit) -> dict[str, int]:
    return dict(unit.terms)


def _make(base: dict[str, int], other: Unit, sign: int) -> Unit:
    for symbol, exp in other.terms:
        base[symbol] = base.get(symbol, 0) + sign * exp
    return Unit(tuple(sorted((s, e) for s, e in base.items() if e)))


DIMENSIONLESS = Unit(())


def parse_unit(text: str) -> Unit:
    """Parse a unit string such as ``g``, ``g/km``, ``kg/kWh``, ``1/trip``, ``points/g``.

    Grammar: ``numerator [/ denominator]`` where each side is ``1`` or atomic units joined by
    ``*`` (or ``·``), each with an optional integer exponent ``^n``. The denominator may be
    parenthesised. ``dimensionless``, ``count`` and ``1`` denote a pure number.
    """
    raw = text.strip()
    if raw in _DIMENSIONLESS_NAMES:
        return DIMENSIONLESS
    parts = raw.split("/")
    if len(parts) > 2:
        raise UnitError(f"unit {text!r} has more than one '/'; write a/(b*c)")
    exps: dict[str, int] = {}
    for side, sign in zip(parts, (1, -1), strict=False):
        side = side.strip()
        if sign == -1 and side.startswith("(") and side.endswith(")"):
            side = side[1:-1].strip()
        if side == "1":
            continue
        for term in side.replace("·", "*").split("*"):
            match = _TERM.match(term.strip())
            if match is None:
                raise UnitError(f"unit {text!r}: cannot read {term.strip()!r}")
            symbol, exp_text = match.group(1), match.group(2)
            if symbol not in _ATOMIC:
                known = ", ".join(sorted(_ATOMIC))
                raise UnitError(f"unit {text!r}: unknown unit {symbol!r} (known: {known})")
            exp = int(exp_text) if exp_text else 1
            exps[symbol] = exps.get(symbol, 0) + sign * exp
    return Unit(tuple(sorted((s, e) for s, e in exps.items() if e)))


def conversion_factor(source: Unit, target: Unit) -> Fraction:
    """Exact factor f such that a value in ``source`` times f is the same quantity in ``target``.

    Raises UnitError when the two units measure different dimensions (km to g, say).
    """
    if source.dimensions() != target.dimensions():
        raise UnitError(f"cannot convert {source} to {target}: different dimensions")
    return source.scale() / target.scale()


def fraction_to_decimal(value: Fraction) -> Decimal | None:
    """The exact Decimal for a fraction with a terminating decimal expansion, else None."""
    den = value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        return None
    shift = max(twos, fives)
    scaled = value * 10**shift
    assert scaled.denominator == 1
    return Decimal(scaled.numerator).scaleb(-shift)
