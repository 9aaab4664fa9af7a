"""Languages: which one a request reads, and the text in it.

The source language of every message is English; translations live in gettext catalogues
(`service/i18n/locale/<locale>/LC_MESSAGES/messages.po`, kept with Babel: `make i18n`). The
catalogues are read once per process (at start-up, `load_catalogues`) into plain dicts, so a
translation is a dict lookup and no request touches a file.

- `_("text %(name)s", name=value)` marks a message for extraction and returns a `Message`: a
  `str` (the English text, so it goes anywhere a string goes) that remembers its id and
  parameters, so the problem handler can render it again in the reader's language.
- `N_("text")` only marks a constant for extraction (problem titles are found without it).
- `negotiate(accept_language, default)` picks a supported language from the header, quality
  values honoured; anything unsupported falls back to `default`.
- `translate(text, language)` renders a `Message` or a catalogued constant in `language`.

The app API (`/v1/app/...`), which citizens read, defaults to zh-CN; partner, merchant and
admin APIs default to English. Every API honours `Accept-Language`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from babel.messages.pofile import read_po

__all__ = [
    "APP_PREFIX",
    "DEFAULT_LANGUAGE",
    "EN",
    "LANGUAGES",
    "N_",
    "ZH_CN",
    "Message",
    "_",
    "catalogue",
    "default_language",
    "gettext_for",
    "load_catalogues",
    "negotiate",
    "translate",
]

ZH_CN: Final = "zh-CN"
EN: Final = "en"
# Supported languages, as sent in Content-Language; the first is the source language.
LANGUAGES: Final = (EN, ZH_CN)
DEFAULT_LANGUAGE: Final = EN
APP_PREFIX: Final = "/v1/app"
LOCALE_DIR: Final = Path(__file__).parent / "locale"
# BCP 47 tag -> gettext locale directory.
_LOCALE_OF: Final = {ZH_CN: "zh_CN"}


class Message(str):
    """A translatable message: the English text, with its catalogue id and parameters."""

    __slots__ = ("msgid", "params")
    msgid: str
    params: Mapping[str, Any]

    def __new__(cls, msgid: str, params: Mapping[str, Any] | None = None) -> Message:
        text = msgid % params if params else msgid
        self = super().__new__(cls, text)
        self.msgid = msgid
        self.params = dict(params or {})
        return self


def _(msgid: str, /, **params: Any) -> Message:
    """Mark `msgid` for translation; named `%(placeholders)s` are filled from `params`."""
    return Message(msgid, params)


def N_(msgid: str, /) -> str:
    """Mark a constant for extraction without changing it."""
    return msgid


def default_language(path: str) -> str:
    """zh-CN for the app API that citizens read, English elsewhere."""
    return ZH_CN if path.startswith(APP_PREFIX) else DEFAULT_LANGUAGE


def _supported(tag: str) -> str | None:
    primary = tag.split("-", 1)[0]
    if primary == "zh":
        return ZH_CN  # zh, zh-CN, zh-Hans, zh-Hans-CN, zh-SG: all read simplified Chinese here
    if primary == "en":
        return EN
    return None


@lru_cache(maxsize=512)
def negotiate(accept_language: str | None, default: str) -> str:
    """The supported language the client prefers most (RFC 9110 quality values; the earlier
    of equal ones), else `default`. `*` stands for `default`; `q=0` refuses a language."""
    if not accept_language:
        return default
    best: tuple[float, int, str] | None = None
    for position, item in enumerate(accept_language.split(",")[:32]):
        tag, _sep, rest = item.strip().partition(";")
        tag = tag.strip().lower()
        quality = 1.0
        for param in rest.split(";"):
            name, _eq, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if not 0 < quality <= 1:
            continue
        language = default if tag == "*" else _supported(tag)
        if language is None:
            continue
        if best is None or quality > best[0]:
            best = (quality, position, language)
    return default if best is None else best[2]


def _read_catalogue(language: str) -> dict[str, str]:
    locale = _LOCALE_OF.get(language)
    if locale is None:
        return {}
    path = LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        po = read_po(handle, locale=locale)
    return {
        str(m.id): str(m.string)
        for m in po
        if m.id and isinstance(m.id, str) and isinstance(m.string, str) and m.string
        if not m.fuzzy
    }


@lru_cache(maxsize=len(LANGUAGES))
def catalogue(language: str) -> Mapping[str, str]:
    """Message id -> translation for `language` (empty for the source language)."""
    return _read_catalogue(language)


def load_catalogues() -> None:
    """Read every catalogue now (at start-up), so that no request waits on a file."""
    for language in LANGUAGES:
        catalogue(language)


def translate(text: str, language: str) -> str:
    """`text` in `language`: a `Message` rendered from its translated template, a catalogued
    constant looked up, anything else (and anything untranslated) unchanged."""
    if language == EN:
        return str(text)
    entries = catalogue(language)
    if isinstance(text, Message):
        template = entries.get(text.msgid)
        if template is None:
            return str(text)
        try:
            return template % text.params if text.params else template
        except (KeyError, ValueError, TypeError):
            return str(text)  # a broken translation never hides the message
    return entries.get(text, text)


def gettext_for(language: str) -> Callable[[str], str]:
    """A `gettext(msgid) -> str` for `language`, for code that takes a translation hook."""
    entries = catalogue(language)

    def gettext(msgid: str) -> str:
        return entries.get(msgid, msgid)

    return gettext


# The modules other domains may import; the rest (the repository first) are this
# domain's own. `tests/architecture/test_domain_boundaries.py` holds everyone to it.
PUBLIC_MODULES = ("methodologies",)
