"""The documents: an issuance (JSON and CSV), a retirement certificate (JSON and a printable
HTML page) and the public registry (JSON and a page). Pure functions of what the service
read; no personal data: participants never appear (a batch's credits are counted, summed and
hashed, never listed here), organisations appear by name, and the public registry leaves out
retirement beneficiaries (they are on the certificate, which the holder shares)."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from service.models import GRAMS_PER_SERIAL
from service.reductions.repository import BlockRow
from service.reductions.serials import PROGRAMME, block_label, kilograms, serial
from service.reductions.service import Certificate, Issuance, Registry

BOM = "\ufeff"


def _at(moment: datetime, zone: ZoneInfo | None) -> str:
    """An instant with its offset, in the programme's time zone when one is given."""
    return (moment.astimezone(zone) if zone else moment).isoformat()


HASH_RULE = "SHA-256 of one line `event_id,grams\\n` per credit, in ascending event id"


def issuance_json(doc: Issuance, zone: ZoneInfo | None = None) -> dict[str, Any]:
    b, p = doc.batch, doc.pool
    return {
        "document": "issuance",
        "programme": PROGRAMME,
        "batch_id": b.id,
        "pool": p.code,
        "sequence_in_pool": b.seq,
        "methodology_id": p.methodology_id,
        "methodology_versions": {"min": p.version_min, "max": p.version_max},
        "region": p.region,
        "vintage": p.vintage,
        "vintage_start": _at(p.vintage_start, zone),
        "vintage_end": _at(p.vintage_end, zone),
        "issued_at": _at(b.issued_at, zone),
        "unit": "kgCO2e",
        "serials": block_label(
            p.region, p.methodology_id, p.vintage, b.serial_first, b.serial_last
        ),
        "serial_first": serial(b.serial_first),
        "serial_last": serial(b.serial_last),
        "kilograms": kilograms(b.serial_first, b.serial_last),
        "issued_grams": b.issued_grams,
        "pooled_grams": b.pooled_grams,
        "carried_in_grams": max(b.opening_grams, 0),
        "shortfall_made_good_grams": max(-b.opening_grams, 0),
        "carried_out_grams": b.closing_grams,
        "provenance": {
            "credits": b.credits_count,
            "credits_sha256": b.credits_hash.hex(),
            "credits_sha256_rule": HASH_RULE,
            "methodology_versions": [
                {"version": int(g.key), "credits": g.credits, "grams": g.grams}
                for g in doc.by_version
            ],
            "grams_by_action_type": [
                {"action_type": g.key, "credits": g.credits, "grams": g.grams}
                for g in doc.by_action_type
            ],
        },
        "ledger_transaction_id": b.ledger_transaction_id,
    }


def _csv(rows: list[list[object]]) -> bytes:
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def issuance_csv(doc: Issuance, zone: ZoneInfo | None = None) -> bytes:
    """UTF-8 with a byte order mark: the batch's fields as `field,value` rows, then its
    provenance as `section,key,credits,grams` rows."""
    data = issuance_json(doc, zone)
    rows: list[list[object]] = [["field", "value"]]
    for key, value in data.items():
        if isinstance(value, dict) and key == "methodology_versions":
            rows.append([key, f"{value['min']}-{value['max']}"])
        elif not isinstance(value, dict | list):
            rows.append([key, value])
    provenance = data["provenance"]
    rows += [
        ["credits", provenance["credits"]],
        ["credits_sha256", provenance["credits_sha256"]],
        [],
        ["section", "key", "credits", "grams"],
    ]
    rows += [["methodology_version", g.key, g.credits, g.grams] for g in doc.by_version]
    rows += [["action_type", g.key, g.credits, g.grams] for g in doc.by_action_type]
    return _csv(rows)


def _block_fields(row: BlockRow) -> dict[str, Any]:
    b, p = row.block, row.pool
    return {
        "block_id": b.id,
        "batch_id": row.batch.id,
        "serials": block_label(
            p.region, p.methodology_id, p.vintage, b.serial_first, b.serial_last
        ),
        "serial_first": serial(b.serial_first),
        "serial_last": serial(b.serial_last),
        "kilograms": kilograms(b.serial_first, b.serial_last),
        "methodology_id": p.methodology_id,
        "region": p.region,
        "vintage": p.vintage,
    }


def certificate_json(cert: Certificate, zone: ZoneInfo | None = None) -> dict[str, Any]:
    r, row = cert.retirement, cert.row
    return {
        "document": "retirement_certificate",
        "programme": PROGRAMME,
        "retirement_id": r.id,
        **_block_fields(row),
        "unit": "kgCO2e",
        "tonnes": f"{kilograms(row.block.serial_first, row.block.serial_last) / 1000:.3f}",
        "retired_by": row.holder.name if row.holder else "programme",
        "beneficiary": r.beneficiary,
        "reason": r.reason,
        "retired_at": _at(r.retired_at, zone),
        "issuance": {
            "batch_id": row.batch.id,
            "issued_at": _at(row.batch.issued_at, zone),
            "credits_sha256": row.batch.credits_hash.hex(),
        },
    }


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, "Noto Sans CJK SC", sans-serif; margin: 2rem; color: #111; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #999; padding: .3rem .6rem;
text-align: left; }} .serial {{ font-family: ui-monospace, monospace; }}
@media print {{ body {{ margin: 1cm; }} }}
</style></head><body>
{body}
</body></html>
"""


def _page(title: str, body: str) -> str:
    return _PAGE.format(title=escape(title), body=body)


def _table(rows: list[tuple[str, object]]) -> str:
    cells = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def certificate_html(cert: Certificate, zone: ZoneInfo | None = None) -> str:
    """A printable page of the certificate (every value escaped)."""
    data = certificate_json(cert, zone)
    body = (
        f"<h1>Retirement certificate {data['retirement_id']}</h1>"
        f"<p class=serial>{escape(data['serials'])}</p>"
        + _table(
            [
                ("Quantity", f"{data['kilograms']} kg CO2e ({data['tonnes']} t)"),
                ("Methodology", data["methodology_id"]),
                ("Region", data["region"]),
                ("Vintage", data["vintage"]),
                ("Retired by", data["retired_by"]),
                ("Beneficiary", data["beneficiary"]),
                ("Reason", data["reason"]),
                ("Retired at", data["retired_at"]),
                ("Issued in batch", data["batch_id"]),
                ("Batch credits SHA-256", data["issuance"]["credits_sha256"]),
            ]
        )
        + "<p>Each serial is one kilogram of CO2e and is retired once only.</p>"
    )
    return _page(f"Retirement certificate {data['retirement_id']}", body)


def registry_json(registry: Registry, zone: ZoneInfo | None = None) -> dict[str, Any]:
    """The totals by vintage and methodology (issued, transferred: held by an organisation,
    retired; in kg) and a page of the live blocks with their status and holder."""
    return {
        "programme": PROGRAMME,
        "unit": "kgCO2e",
        "grams_per_serial": GRAMS_PER_SERIAL,
        "totals": [
            {
                "vintage": t.vintage,
                "methodology_id": t.methodology_id,
                "issued_kg": t.issued_kg,
                "transferred_kg": t.transferred_kg,
                "retired_kg": t.retired_kg,
            }
            for t in registry.totals
        ],
        "blocks": [
            {
                **_block_fields(row),
                "status": row.block.status,
                "holder": row.holder.name if row.holder else None,
                "retirement_id": row.retirement.id if row.retirement else None,
                "retired_at": _at(row.retirement.retired_at, zone) if row.retirement else None,
            }
            for row in registry.blocks
        ],
        "next_cursor": str(registry.next_offset) if registry.next_offset is not None else None,
    }


def registry_html(data: dict[str, Any]) -> str:
    totals = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(str(t[k]))}</td>"
            for k in ("vintage", "methodology_id", "issued_kg", "transferred_kg", "retired_kg")
        )
        + "</tr>"
        for t in data["totals"]
    )
    blocks = "".join(
        "<tr>"
        + f"<td class=serial>{escape(b['serials'])}</td>"
        + f"<td>{b['kilograms']}</td><td>{escape(b['status'])}</td>"
        + f"<td>{escape(b['holder'] or 'programme')}</td>"
        + "</tr>"
        for b in data["blocks"]
    )
    body = (
        "<h1>Certified reductions registry</h1>"
        "<p>One serial is one kilogram of CO2e. Totals in kilograms.</p>"
        "<h2>Totals</h2><table><tr><th>Vintage</th><th>Methodology</th><th>Issued</th>"
        f"<th>Transferred</th><th>Retired</th></tr>{totals}</table>"
        "<h2>Serial blocks</h2><table><tr><th>Serials</th><th>kg</th><th>Status</th>"
        f"<th>Held by</th></tr>{blocks}</table>"
    )
    return _page("Certified reductions registry", body)


def json_bytes(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data)
