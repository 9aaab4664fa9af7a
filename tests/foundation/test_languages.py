"""Languages: negotiation, and catalogues that cover every message the code can show."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

import service
from service.errors import ProblemError
from service.i18n import EN, ZH_CN, Message, _, catalogue, default_language, negotiate, translate

ROOT = Path(__file__).parents[2]
PO = ROOT / "service" / "i18n" / "locale" / "zh_CN" / "LC_MESSAGES" / "messages.po"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@pytest.mark.parametrize(
    ("header", "default", "expected"),
    [
        (None, ZH_CN, ZH_CN),
        ("", EN, EN),
        ("en", ZH_CN, EN),
        ("en-GB,en;q=0.8", ZH_CN, EN),
        ("zh-CN", EN, ZH_CN),
        ("zh", EN, ZH_CN),
        ("zh-Hans-CN,zh;q=0.9", EN, ZH_CN),
        ("en;q=0.5, zh-CN;q=0.9", EN, ZH_CN),
        ("zh-CN;q=0.5, en;q=0.9", ZH_CN, EN),
        ("fr-FR, de;q=0.9", ZH_CN, ZH_CN),  # nothing supported: the API's default
        ("fr-FR, de;q=0.9", EN, EN),
        ("*", ZH_CN, ZH_CN),
        ("en;q=0, *;q=0.1", ZH_CN, ZH_CN),  # q=0 refuses English
        ("en;q=bogus, zh-CN", EN, ZH_CN),
        ("en, zh-CN", ZH_CN, EN),  # equal quality: the first
    ],
)
def test_accept_language_is_negotiated(header: str | None, default: str, expected: str) -> None:
    assert negotiate(header, default) == expected


def test_the_app_api_defaults_to_chinese_and_the_others_to_english() -> None:
    assert default_language("/v1/app/balance") == ZH_CN
    for path in (
        "/v1/partner/events",
        "/v1/merchant/redemptions",
        "/v1/admin/partners",
        "/healthz",
    ):
        assert default_language(path) == EN


def _problem_classes() -> set[type[ProblemError]]:
    for module in pkgutil.walk_packages(service.__path__, "service."):
        importlib.import_module(module.name)
    found: set[type[ProblemError]] = set()
    pending = [ProblemError]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_problem_class_has_a_chinese_title() -> None:
    entries = catalogue(ZH_CN)
    classes = _problem_classes()
    assert len(classes) > 50
    missing = sorted(
        f"{c.__module__}.{c.__name__}: {c.title!r}" for c in classes if c.title not in entries
    )
    assert not missing, "run `make i18n` and translate:\n" + "\n".join(missing)


def test_the_catalogue_holds_every_message_the_code_marks() -> None:
    """What `make i18n` would extract today is all in the zh-CN catalogue, translated."""
    method_map, options_map = parse_mapping_cfg((ROOT / "babel.cfg").open())
    keywords = {**DEFAULT_KEYWORDS, "_line": None, "_tr": None}
    extracted = {
        message if isinstance(message, str) else message[0]
        for _file, _line, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=keywords
        )
    }
    assert len(extracted) > 150
    entries = catalogue(ZH_CN)
    missing = sorted(m for m in extracted if not entries.get(m))
    assert not missing, "run `make i18n` and translate:\n" + "\n".join(missing)


def test_translations_keep_every_placeholder_and_nothing_is_fuzzy() -> None:
    with PO.open("rb") as handle:
        po = read_po(handle)
    for entry in po:
        if not entry.id:
            continue
        assert not entry.fuzzy, entry.id
        assert isinstance(entry.id, str) and isinstance(entry.string, str)
        assert set(PLACEHOLDER.findall(entry.string)) == set(PLACEHOLDER.findall(entry.id)), (
            entry.id
        )


def test_a_message_is_english_text_that_renders_again_in_chinese() -> None:
    message = _("no credit %(credit_id)s on this account", credit_id=42)
    assert isinstance(message, Message)
    assert message == "no credit 42 on this account"
    assert translate(message, EN) == "no credit 42 on this account"
    assert translate(message, ZH_CN) == "本账号没有编号为 42 的积分记录"
    assert translate("Not found", ZH_CN) == "未找到"
    assert translate("not in any catalogue", ZH_CN) == "not in any catalogue"
