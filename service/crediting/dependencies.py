"""The crediting path's per-process pieces, as typed FastAPI dependencies.

The lifespan (`service.app`) creates them once and keeps them on `app.state`; endpoints
declare them in their signatures. `async def`, so no thread hop on the hot path.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from service.crediting.group_commit import GroupCommitter
from service.crediting.service import CreditingSettings
from service.methodologies.service import RegistryCache


def crediting_settings(app: FastAPI) -> CreditingSettings:
    """The crediting settings of an app whose lifespan has started."""
    state = app.state
    return CreditingSettings(
        pepper=state.secrets.identifier_pepper,
        validity=state.crediting_validity,
        flags=state.flag_rules.current,
    )


async def _crediting_settings(request: Request) -> CreditingSettings:
    return crediting_settings(request.app)


CreditingConfig = Annotated[CreditingSettings, Depends(_crediting_settings)]
"""The pepper for subject hashes and the points' validity."""


@dataclass(frozen=True, slots=True)
class CreditingRuntime:
    """What the partner API's endpoints need, as ONE dependency: each FastAPI dependency costs
    about 9 µs of CPU to solve, and these endpoints are the crediting hot path."""

    registry_cache: RegistryCache
    settings: CreditingSettings
    single_events: GroupCommitter
    """The group committer single events are credited through."""
    batch_slots: asyncio.Semaphore
    """How many batches this process credits at once."""


async def _crediting_runtime(request: Request) -> CreditingRuntime:
    state = request.app.state
    return CreditingRuntime(
        state.registry_cache,
        crediting_settings(request.app),
        state.single_events,
        state.batch_slots,
    )


Crediting = Annotated[CreditingRuntime, Depends(_crediting_runtime)]
