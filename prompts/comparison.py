"""Pure helpers for comparing two texts (API compare, admin diff). No ORM."""

import difflib
from dataclasses import dataclass

from rhetor_site.tokens import estimate_tokens


def unified_diff(before: str, after: str, *, label_before: str, label_after: str) -> list[str]:
    """Unified line diff, one string per line without trailing newlines."""
    return [
        line.rstrip("\n")
        for line in difflib.unified_diff(
            before.splitlines(),
            after.splitlines(),
            fromfile=label_before,
            tofile=label_after,
            lineterm="",
        )
    ]


@dataclass(frozen=True)
class TextMetrics:
    length: int
    tokens: int


def text_metrics(text: str) -> TextMetrics:
    return TextMetrics(length=len(text), tokens=estimate_tokens(text))


def diff_line_kind(line: str) -> str:
    """CSS class for a unified-diff line: header, hunk, add, remove or context."""
    if line.startswith(("+++", "---")):
        return "header"
    if line.startswith("@@"):
        return "hunk"
    if line.startswith("+"):
        return "add"
    if line.startswith("-"):
        return "remove"
    return "context"
