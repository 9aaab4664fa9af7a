"""The reductions API: `/v1/admin/reductions/...` (pools, runs, issuance documents, holders,
transfers, retirements; role `program-admin` to act, `auditor` too to read; every act in the
audit trail) and the public registry `/v1/app/registry` (JSON, or a page with
`?format=html`; no personal data)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, status
from fastapi.responses import HTMLResponse, Response

from service.admin.dependencies import AdminPrincipal, require
from service.config import Settings
from service.db import DbSession
from service.dependencies import AppSettings
from service.fields import (
    CODE_PATTERN,
    REDUCTION_CODE_MAX_LENGTH,
    Cursor,
    Limit,
    cursor_offset,
    id_path,
)
from service.models import ReductionBlock, ReductionHolder, ReductionPool
from service.reductions import documents, service
from service.reductions.schemas import (
    BlockOut,
    BlockRetireIn,
    BlockTransferIn,
    HolderIn,
    HolderOut,
    PoolIn,
    PoolOut,
    PoolPositionOut,
    RegistryOut,
)
from service.reductions.serials import block_label, kilograms

router = APIRouter(prefix="/v1/admin/reductions")
public_router = APIRouter()
REDUCTIONS = "admin-reductions"
REGISTRY = "app-registry"

ProgramAdmin = Annotated[AdminPrincipal, Depends(require("program-admin"))]
Reader = Annotated[AdminPrincipal, Depends(require("program-admin", "auditor"))]
PoolCode = Annotated[
    str,
    Path(pattern=CODE_PATTERN, max_length=REDUCTION_CODE_MAX_LENGTH, description="the pool"),
]
BatchId = Annotated[int, id_path("the batch")]
BlockId = Annotated[int, id_path("the serial block")]
RetirementId = Annotated[int, id_path("the retirement")]
Document = dict[str, Any]


def _formats(*media: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "content": {
                "application/json": {},
                **{m: {"schema": {"type": "string"}} for m in media},
            }
        }
    }


def _zone(settings: Settings) -> ZoneInfo:
    return ZoneInfo(settings.program_timezone)


def _pool_out(pool: ReductionPool) -> PoolOut:
    return PoolOut(
        code=pool.code,
        methodology_id=pool.methodology_id,
        version_min=pool.version_min,
        version_max=pool.version_max,
        region=pool.region,
        vintage=pool.vintage,
        vintage_start=pool.vintage_start,
        vintage_end=pool.vintage_end,
        min_grams=pool.min_grams,
        settle_hours=pool.settle_hours,
    )


def _block_out(block: ReductionBlock, pool: ReductionPool, holder: str | None) -> BlockOut:
    return BlockOut(
        id=block.id,
        batch_id=block.batch_id,
        serials=block_label(
            pool.region, pool.methodology_id, pool.vintage, block.serial_first, block.serial_last
        ),
        serial_first=block.serial_first,
        serial_last=block.serial_last,
        kilograms=kilograms(block.serial_first, block.serial_last),
        status=block.status,
        holder=holder,
    )


@router.post(
    "/pools",
    status_code=status.HTTP_201_CREATED,
    response_model=PoolOut,
    tags=[REDUCTIONS],
    summary="Define a pool: a methodology (version range), region, vintage and minimum batch",
)
async def create_reduction_pool(
    body: PoolIn, admin: ProgramAdmin, session: DbSession, settings: AppSettings
) -> PoolOut:
    pool = await service.create_pool(
        session,
        admin.actor,
        code=body.code,
        methodology_id=body.methodology_id,
        version_min=body.version_min,
        version_max=body.version_max,
        region=body.region,
        vintage=body.vintage,
        min_kilograms=body.min_kilograms,
        settle_hours=body.settle_hours,
        tz=settings.program_timezone,
    )
    return _pool_out(pool)


@router.get(
    "/pools/{code}",
    response_model=PoolPositionOut,
    tags=[REDUCTIONS],
    summary="A pool and its position: grams carried to its next batch, or its shortfall",
)
async def get_reduction_pool(code: PoolCode, admin: Reader, session: DbSession) -> PoolPositionOut:
    position = await service.pool_position(session, code)
    return PoolPositionOut(
        pool=_pool_out(position.pool),
        balance_grams=position.balance,
        issued_grams=position.issued,
        position_grams=position.position,
        reversed_after_pooling_credits=len(position.shortfall_credits),
        reversed_after_pooling_grams=sum(c.grams for c in position.shortfall_credits),
    )


@router.post(
    "/pools/{code}/runs",
    status_code=status.HTTP_201_CREATED,
    response_model=Document,
    tags=[REDUCTIONS],
    summary="Run the pool: pool its eligible credits and issue a batch (its issuance document)",
)
async def run_reduction_pool(
    code: PoolCode, admin: ProgramAdmin, session: DbSession, settings: AppSettings
) -> Document:
    batch = await service.run_pool(session, admin.actor, code, now=datetime.now(UTC))
    return documents.issuance_json(await service.issuance(session, batch.id), _zone(settings))


@router.get(
    "/batches/{batch_id}",
    response_model=Document,
    tags=[REDUCTIONS],
    responses=_formats("text/csv"),
    summary="A batch's issuance document with its provenance summary (JSON or CSV)",
)
async def get_reduction_batch(
    batch_id: BatchId,
    admin: Reader,
    session: DbSession,
    settings: AppSettings,
    format: Annotated[
        Literal["json", "csv"], Query(description="`csv`: UTF-8 with a byte order mark.")
    ] = "json",
) -> Response:
    doc = await service.issuance(session, batch_id)
    if format == "csv":
        return Response(
            documents.issuance_csv(doc, _zone(settings)),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="batch-{batch_id}.csv"'},
        )
    return Response(
        documents.json_bytes(documents.issuance_json(doc, _zone(settings))),
        media_type="application/json",
    )


@router.post(
    "/holders",
    status_code=status.HTTP_201_CREATED,
    response_model=HolderOut,
    tags=[REDUCTIONS],
    summary="Open an organisation account that can hold and retire serial blocks",
)
async def create_reduction_holder(
    body: HolderIn, admin: ProgramAdmin, session: DbSession
) -> HolderOut:
    holder: ReductionHolder = await service.create_holder(
        session, admin.actor, code=body.code, name=body.name
    )
    return HolderOut(code=holder.code, name=holder.name)


@router.get(
    "/blocks/{block_id}",
    response_model=BlockOut,
    tags=[REDUCTIONS],
    summary="A serial block: its serials, status and holder",
)
async def get_reduction_block(block_id: BlockId, admin: Reader, session: DbSession) -> BlockOut:
    row = await service.block(session, block_id)
    return _block_out(row.block, row.pool, row.holder.code if row.holder else None)


@router.post(
    "/blocks/{block_id}/transfer",
    response_model=list[BlockOut],
    tags=[REDUCTIONS],
    summary="Split off the first kilograms of a block (all by default) to an organisation",
)
async def transfer_reduction_block(
    block_id: BlockId, body: BlockTransferIn, admin: ProgramAdmin, session: DbSession
) -> list[BlockOut]:
    made = await service.transfer(
        session,
        admin.actor,
        block_id=block_id,
        from_holder=body.from_holder,
        to_holder=body.to_holder,
        kilograms=body.kilograms,
    )
    row = await service.block(session, block_id)
    # The transferred block first, then what is left with the block's holder.
    codes = [body.to_holder, *([body.from_holder] * (len(made) - 1))]
    return [_block_out(b, row.pool, code) for b, code in zip(made, codes, strict=True)]


@router.post(
    "/blocks/{block_id}/retire",
    status_code=status.HTTP_201_CREATED,
    response_model=Document,
    tags=[REDUCTIONS],
    summary="Retire a block (or its first kilograms) once, for a beneficiary; its certificate",
)
async def retire_reduction_block(
    block_id: BlockId,
    body: BlockRetireIn,
    admin: ProgramAdmin,
    session: DbSession,
    settings: AppSettings,
) -> Document:
    retirement = await service.retire(
        session,
        admin.actor,
        block_id=block_id,
        holder=body.holder,
        beneficiary=body.beneficiary,
        reason=body.reason,
        kilograms=body.kilograms,
        now=datetime.now(UTC),
    )
    cert = await service.certificate(session, retirement.id)
    return documents.certificate_json(cert, _zone(settings))


@router.get(
    "/retirements/{retirement_id}",
    response_model=Document,
    tags=[REDUCTIONS],
    responses=_formats("text/html"),
    summary="A retirement certificate (JSON, or a printable page with `format=html`)",
)
async def get_retirement_certificate(
    retirement_id: RetirementId,
    admin: Reader,
    session: DbSession,
    settings: AppSettings,
    format: Annotated[Literal["json", "html"], Query(description="`html`: a printable page.")] = (
        "json"
    ),
) -> Response:
    cert = await service.certificate(session, retirement_id)
    if format == "html":
        return HTMLResponse(documents.certificate_html(cert, _zone(settings)))
    return Response(
        documents.json_bytes(documents.certificate_json(cert, _zone(settings))),
        media_type="application/json",
    )


@public_router.get(
    "/v1/app/registry",
    response_model=RegistryOut,
    tags=[REGISTRY],
    responses=_formats("text/html"),
    summary="The public registry: totals by vintage and methodology, and the serial blocks",
)
async def get_reductions_registry(
    session: DbSession,
    settings: AppSettings,
    cursor: Cursor = None,
    limit: Limit = 100,
    format: Annotated[Literal["json", "html"], Query(description="`html`: a page.")] = "json",
) -> Response:
    registry = await service.registry(session, offset=cursor_offset(cursor), limit=limit)
    data = documents.registry_json(registry, _zone(settings))
    if format == "html":
        return HTMLResponse(documents.registry_html(data))
    return Response(documents.json_bytes(data), media_type="application/json")
