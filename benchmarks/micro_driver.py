"""Python time of one small statement three ways, in one process: through
`AsyncSession.execute(text(...))`, through `AsyncConnection.exec_driver_sql`, and straight
to the session's asyncpg connection (`service.db.driver`). The figure behind the till's
statements going to the driver (docs/performance.md, issue 12).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \
        .venv/bin/python benchmarks/micro_driver.py

Prints CPU and wall microseconds a statement, each way twice, interleaved.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text

from service.db import create_engine, create_sessionmaker, driver

N = 3000
SQL = (
    "SELECT id, code, posted FROM (VALUES (1::bigint, 'a'::text, 5::bigint))"
    " AS t(id, code, posted) WHERE id = $1"
)
TEXT = text(
    "SELECT id, code, posted FROM (VALUES (1::bigint, 'a'::text, 5::bigint))"
    " AS t(id, code, posted) WHERE id = :id"
)


async def main() -> None:
    engine = create_engine(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1/test"))
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker() as session, session.begin():
            connection = await session.connection()
            raw = await driver(session)
            ways: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
                ("AsyncSession.execute(text)", lambda: session.execute(TEXT, {"id": 1})),
                ("exec_driver_sql", lambda: connection.exec_driver_sql(SQL, (1,))),
                ("driver (asyncpg)", lambda: raw.fetch(SQL, 1)),
            ]
            for _, call in ways:  # warm: prepared statements, caches
                for _ in range(200):
                    await call()
            for label, call in ways * 2:
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(N):
                    await call()
                cpu_us = 1e6 * (time.process_time() - cpu) / N
                wall_us = 1e6 * (time.perf_counter() - wall) / N
                print(f"{label:28s} cpu {cpu_us:7.1f} us  wall {wall_us:7.1f} us")
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
