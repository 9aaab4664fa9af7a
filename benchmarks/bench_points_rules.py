"""Benchmark: methodology evaluations per second on one core (metro, with caps).

Run: .venv/bin/python benchmarks/bench_points_rules.py [--n 20000] [--repeat 5]

Pre-builds N varied metro actions (distance, duration, some without distance, spread over days,
with usage near and under the caps), then times a tight loop of ``evaluate`` calls. Reports the
best of ``repeat`` runs, as evals/s and µs/eval.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import random
import sys
import time
from decimal import Decimal
from pathlib import Path

# Runnable as a plain script from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from points_rules import Action, Usage, default_registry, evaluate, usage_key


def build_actions(n: int, seed: int = 7) -> list[tuple[Action, dict[str, Usage]]]:
    """N varied metro actions, each with a usage_so_far mapping for its cap periods."""
    rng = random.Random(seed)
    base = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    out = []
    for _ in range(n):
        occurred = base + dt.timedelta(seconds=rng.randrange(0, 60 * 86400))
        received = occurred + dt.timedelta(seconds=rng.randrange(0, 3 * 86400))
        inputs: dict[str, Decimal | int | str | bool] = {}
        if rng.random() < 0.9:
            distance = rng.randrange(600, 40000)
            inputs["distance_m"] = Decimal(distance)
            inputs["duration_s"] = Decimal(max(60, distance // 8 + rng.randrange(0, 900)))
        local = occurred.astimezone(dt.timezone(dt.timedelta(hours=8))).date()
        used = rng.randrange(0, 2200)
        usage = {
            usage_key("transit.daily", "day", local): Usage(used, used),
            usage_key("transit.monthly", "month", local): Usage(used * 15, used * 15),
        }
        out.append((Action("transit.metro", occurred, received, inputs), usage))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    registry = default_registry()
    methodology = registry.select("transit.metro", dt.datetime(2025, 3, 1, tzinfo=dt.UTC))
    cases = build_actions(args.n)
    statuses: dict[str, int] = {}
    for action, usage in cases:  # warm-up, and a sanity check of the mix
        status = evaluate(methodology, action, usage).status
        statuses[status] = statuses.get(status, 0) + 1
    best = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        for action, usage in cases:
            evaluate(methodology, action, usage)
        best = min(best, time.perf_counter() - start)
    rate = args.n / best
    print(f"methodology  {methodology.id} v{methodology.version} ({len(methodology.caps)} caps)")
    print(f"python       {platform.python_implementation()} {sys.version.split()[0]}")
    print(f"machine      {platform.machine()}, {platform.processor() or 'unknown cpu'}")
    print(f"actions      {args.n} (status mix {dict(sorted(statuses.items()))})")
    print(f"best of {args.repeat}    {best * 1000:.1f} ms")
    print(f"evals/s      {rate:,.0f}")
    print(f"µs/eval      {1e6 / rate:.2f}")


if __name__ == "__main__":
    main()
