"""A Babel extraction method for the service's Python: gettext calls, as Babel's own
`python` method finds them, and every problem class's `title` (a class attribute assigned a
string literal), so that a new problem class lands in the catalogue without a marker.

Named in `babel.cfg`; run by `make i18n`.
"""

from __future__ import annotations

import ast
import io
from collections.abc import Collection, Iterator, Mapping
from typing import IO, Any

from babel.messages.extract import extract_python

__all__ = ["extract_service_python", "problem_titles"]


def problem_titles(source: str) -> Iterator[tuple[int, str]]:
    """(line, text) of each `title = "..."` assigned directly in a class body."""
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        for statement in node.body:
            targets: list[ast.expr] = []
            value: ast.expr | None = None
            if isinstance(statement, ast.Assign):
                targets, value = statement.targets, statement.value
            elif isinstance(statement, ast.AnnAssign):
                targets, value = [statement.target], statement.value
            if not any(isinstance(t, ast.Name) and t.id == "title" for t in targets):
                continue
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                yield statement.lineno, value.value


def extract_service_python(
    fileobj: IO[bytes],
    keywords: Mapping[str, Any],
    comment_tags: Collection[str],
    options: dict[str, Any],
) -> Iterator[tuple[Any, ...]]:
    """Babel's extraction method signature: gettext calls, then problem titles."""
    data = fileobj.read()
    yield from extract_python(io.BytesIO(data), keywords, comment_tags, options)  # type: ignore[arg-type]
    encoding = str(options.get("encoding", "utf-8"))
    for line, title in problem_titles(data.decode(encoding)):
        yield line, "", title, ["problem title"]
