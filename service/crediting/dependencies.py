"""The crediting path's per-process pieces, as typed FastAPI dependencies.

The lifespan (`service.app`) creates them once and keeps them on `app.state`; endpoints
declare them in their signatures. `async def`, so no thread hop on the hot path.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from service.crediting.group_commit import GroupCommitter
from service.crediting.service import CreditingSettings


def crediting_settings(app: FastAPI) -> CreditingSettings:
    """The crediting settings of an app whose lifespan has started."""
    state = app.state
    return CreditingSettings(
        pepper=state.secrets.identifier_pepper,
        validity=state.crediting_validity,
    )


async def _crediting_settings(request: Request) -> CreditingSettings:
    return crediting_settings(request.app)


async def _single_events(request: Request) -> GroupCommitter:
    committer: GroupCommitter = request.app.state.single_events
    return committer


async def _batch_slots(request: Request) -> asyncio.Semaphore:
    slots: asyncio.Semaphore = request.app.state.batch_slots
    return slots


CreditingConfig = Annotated[CreditingSettings, Depends(_crediting_settings)]
"""The pepper for subject hashes and the points' validity."""

SingleEvents = Annotated[GroupCommitter, Depends(_single_events)]
"""The group committer single events are credited through."""

BatchSlots = Annotated[asyncio.Semaphore, Depends(_batch_slots)]
"""How many batches this process credits at once."""
