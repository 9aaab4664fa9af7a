"""A methodology's words in the reader's language: titles, descriptions, rule messages and the
engine's reasons, and an explanation's trace as a whole.

`points_rules` stays free of catalogues: documents carry their own translations (their
`translations:` block, read through `Methodology.title_in` / `message_in`), and the engine's
reasons carry an English template with parameters that the catalogue translates here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from points_rules import Methodology, Reason, Trace
from service.i18n import EN, catalogue, gettext_for

__all__ = ["localise_reason", "localise_reasons", "localise_trace", "render_explanation"]


def localise_reason(
    code: str,
    message: str,
    language: str,
    *,
    methodology: Methodology | None = None,
    template: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> str:
    """One outcome reason in `language`: an engine reason from its template, a rule's from the
    document's translation, else a catalogued constant, else the stored English message."""
    if language == EN:
        return message
    entries = catalogue(language)
    if template is not None:
        translated = entries.get(template)
        if translated is not None:
            try:
                return translated % dict(params or {})
            except (KeyError, ValueError, TypeError):
                return message
    if methodology is not None:
        shown = methodology.message_in(code, message, language)
        if shown is not message:
            return shown
    return entries.get(message, message)


def _reason(reason: Reason, methodology: Methodology, language: str) -> Reason:
    text = localise_reason(
        reason.code,
        reason.message,
        language,
        methodology=methodology,
        template=reason.template,
        params=dict(reason.params),
    )
    # The template is spent: the message is final in `language`.
    return Reason(reason.code, text)


def localise_reasons(
    reasons: tuple[Reason, ...], methodology: Methodology, language: str
) -> tuple[Reason, ...]:
    return tuple(_reason(r, methodology, language) for r in reasons)


def localise_trace(trace: Trace, methodology: Methodology, language: str) -> Trace:
    """The trace with its title, rule messages and reasons in `language`."""
    if language == EN:
        return trace
    checks = tuple(
        dataclasses.replace(c, message=methodology.message_in(c.code, c.message, language))
        for c in trace.checks
    )
    outcome = dataclasses.replace(
        trace.outcome, reasons=localise_reasons(trace.outcome.reasons, methodology, language)
    )
    return dataclasses.replace(
        trace, title=methodology.title_in(language), checks=checks, outcome=outcome
    )


def render_explanation(
    trace: Trace, methodology: Methodology, language: str
) -> tuple[dict[str, Any], str]:
    """(the trace as JSON, its text), both in `language`; the methodology's description is
    added to the JSON's `methodology`."""
    shown = localise_trace(trace, methodology, language)
    body = shown.to_dict()
    body["methodology"]["description"] = methodology.description_in(language)
    text = shown.render_text(None if language == EN else gettext_for(language))
    return body, text
