"""The console's own files: the vendored libraries are the registry packages' files, as the
table in service/console/static/vendor/README.md records them, with their licences; every
script and stylesheet a page names is served; nothing outside the static folder is."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx

from service.console.dependencies import STATIC, TEMPLATES

VENDOR = STATIC / "vendor"
ROW = re.compile(
    r"^\| `([^`]+)/` \| `([^`]+)` \| `dist/([^`]+)` \| [^|]+\(`([^`]+)`\) \| `([0-9a-f]{64})` \|$"
)


def test_each_vendored_file_is_the_one_the_readme_records_with_its_licence() -> None:
    rows = [ROW.match(line) for line in (VENDOR / "README.md").read_text().splitlines()]
    found = [row.groups() for row in rows if row]
    assert {directory for directory, *_ in found} == {
        p.name for p in VENDOR.iterdir() if p.is_dir()
    }
    for directory, package, name, licence, digest in found:
        assert directory == package.replace("@", "-").replace("htmx.org", "htmx")
        assert hashlib.sha256((VENDOR / directory / name).read_bytes()).hexdigest() == digest
        assert (VENDOR / directory / licence).stat().st_size > 500


def _named_by_templates() -> set[str]:
    named: set[str] = set()
    for template in Path(TEMPLATES).glob("*.html"):
        named |= set(re.findall(r'(?:src|href)="(/admin/static/[^"]+)"', template.read_text()))
    return named


async def test_every_file_a_page_names_is_served_and_nothing_else(
    browser: httpx.AsyncClient,
) -> None:
    named = _named_by_templates()
    assert len(named) == 4  # htmx, Chart.js, the console's script and stylesheet
    for path in sorted(named):
        response = await browser.get(path)
        assert response.status_code == 200, path
        assert response.headers["x-content-type-options"] == "nosniff"
        expected = "text/css" if path.endswith(".css") else "text/javascript"
        assert response.headers["content-type"].startswith(expected)
    for escape in (
        "../endpoints.py",
        "..%2Fendpoints.py",
        "%2e%2e/session.py",
        "vendor/../../session.py",
        "nope.js",
    ):
        assert (await browser.get(f"/admin/static/{escape}")).status_code == 404, escape
