"""Administrator CLI: ``carbon-points methodology <validate|explain> ...``.

The service's CLI calls ``main(argv)`` with the arguments after ``methodology``.

- ``validate FILE...``: exit 0 when every file is valid and the set has no overlapping versions;
  otherwise exit 1, one pinpointed problem per line on stderr (``file:line:col: path: message``).
- ``explain FILE --input name=value ... [--occurred-at ISO] [--received-at ISO]
  [--region CODE] [--usage cap=grams,points] [--json]``: print the trace of one action.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from decimal import Decimal, InvalidOperation

from points_rules._errors import InvalidActionError, MethodologyError
from points_rules._evaluate import Action, InputValue, Usage, cap_windows
from points_rules._explain import explain
from points_rules._methodology import Methodology, load_methodology
from points_rules._registry import Registry

__all__ = ["main"]


class _UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carbon-points methodology", description="Validate and explain methodology files."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="validate methodology files")
    validate.add_argument("files", nargs="+", metavar="FILE")
    exp = sub.add_parser("explain", help="evaluate one action and print its full trace")
    exp.add_argument("file", metavar="FILE")
    exp.add_argument("--input", action="append", default=[], metavar="NAME=VALUE")
    exp.add_argument("--occurred-at", help="ISO 8601 with offset (default: now)")
    exp.add_argument("--received-at", help="ISO 8601 with offset (default: occurred-at)")
    exp.add_argument("--region", help="region code of the action, e.g. CN-JX")
    exp.add_argument(
        "--usage",
        action="append",
        default=[],
        metavar="CAP=GRAMS,POINTS",
        help="what the subject already has in a cap's current period (cap key)",
    )
    exp.add_argument("--json", action="store_true", help="print the trace as JSON")
    return parser


def _validate(files: list[str]) -> int:
    loaded: list[Methodology] = []
    failed = False
    for file in files:
        try:
            m = load_methodology(file)
        except MethodologyError as exc:
            failed = True
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            continue
        loaded.append(m)
        print(f"ok {file}: {m.id} v{m.version} ({m.action_type}, {m.region or 'default'})")
    if len(loaded) > 1:
        try:
            Registry(loaded)
        except MethodologyError as exc:
            failed = True
            for problem in exc.problems:
                print(problem, file=sys.stderr)
    return 1 if failed else 0


def _when(text: str | None, default: dt.datetime, flag: str) -> dt.datetime:
    if text is None:
        return default
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise _UsageError(f"{flag}: {text!r} is not an ISO 8601 date-time") from None
    if value.tzinfo is None:
        raise _UsageError(f"{flag}: {text!r} needs a UTC offset, e.g. +08:00")
    return value


def _input_value(m: Methodology, name: str, text: str) -> InputValue:
    spec = next((s for s in m.inputs if s.name == name), None)
    if spec is None:
        known = ", ".join(s.name for s in m.inputs)
        raise _UsageError(f"--input {name}: not an input of {m.id} (inputs: {known})")
    if spec.kind == "boolean":
        if text.lower() not in ("true", "false"):
            raise _UsageError(f"--input {name}: expected true or false")
        return text.lower() == "true"
    if spec.kind == "category":
        return text
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise _UsageError(f"--input {name}: {text!r} is not a number") from None
    if spec.kind == "integer":
        if number != number.to_integral_value():
            raise _UsageError(f"--input {name}: expected an integer")
        return int(number)
    return number


def _explain(args: argparse.Namespace) -> int:
    try:
        m = load_methodology(args.file)
    except MethodologyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    occurred = _when(args.occurred_at, dt.datetime.now(dt.UTC), "--occurred-at")
    received = _when(args.received_at, occurred, "--received-at")
    inputs: dict[str, InputValue] = {}
    for item in args.input:
        name, sep, text = item.partition("=")
        if not sep:
            raise _UsageError(f"--input {item!r}: expected NAME=VALUE")
        inputs[name.strip()] = _input_value(m, name.strip(), text.strip())
    windows = {w.cap_key: w.usage_key for w in cap_windows(m, occurred)}
    usage: dict[str, Usage] = {}
    for item in args.usage:
        cap, sep, text = item.partition("=")
        parts = text.split(",")
        if not sep or len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise _UsageError(f"--usage {item!r}: expected CAP=GRAMS,POINTS")
        if cap not in windows:
            known = ", ".join(windows) or "none"
            raise _UsageError(f"--usage {cap}: not a cap of {m.id} (caps: {known})")
        usage[windows[cap]] = Usage(int(parts[0]), int(parts[1]))
    action = Action(m.action_type, occurred, received, inputs, args.region)
    try:
        trace = explain(m, action, usage)
    except InvalidActionError as exc:
        raise _UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(trace.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(trace.render_text())
    return 0


def main(argv: list[str]) -> int:
    """Run ``validate`` or ``explain``; return the exit code (0 ok, 1 invalid, 2 usage)."""
    try:
        args = _parser().parse_args(argv)
        if args.command == "validate":
            return _validate(args.files)
        return _explain(args)
    except SystemExit as exc:  # argparse reports usage errors by exiting
        return exc.code if isinstance(exc.code, int) else 2
    except _UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
