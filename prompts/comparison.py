"""Comparing two texts (the admin's diff) and two prompt versions (POST /prompts/compare,
whose model run is a door of the gateway: llm/api.py)."""

import difflib
from dataclasses import dataclass
from typing import Any

from prompts import selectors
from prompts.errors import ContentInvalid
from prompts.models import Prompt, PromptVersion
from prompts.schemas import ComparedPromptOut, CompareMetricsOut, PromptCompareIn
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


# --- Two prompt versions ---------------------------------------------------------------

RUN_NEEDS_MESSAGE = "A run needs a sample `message` to send with each prompt."
RUN_ACTIVE_ONLY = (
    "A run sends each prompt's active version; activate version {version} first or omit it."
)


@dataclass(frozen=True)
class _Compared:
    prompt: Prompt
    version: PromptVersion


def _compare_load(payload: PromptCompareIn) -> tuple[_Compared, _Compared]:
    pairs = []
    for prompt_id, number in (
        (payload.prompt_id1, payload.version1),
        (payload.prompt_id2, payload.version2),
    ):
        prompt = selectors.prompt_get(prompt_id=prompt_id)
        pairs.append(_Compared(prompt, selectors.prompt_version_get(prompt=prompt, version=number)))
    return pairs[0], pairs[1]


def _compared_out(c: _Compared) -> dict[str, Any]:
    metrics = text_metrics(c.version.content)
    return {
        "prompt_id": c.prompt.slug,
        "name": c.prompt.name,
        "component": c.prompt.component,
        "version": c.version.version,
        "version_id": c.version.pk,
        "content": c.version.content,
        "variables": c.version.variable_names,
        "length": metrics.length,
        "tokens": metrics.tokens,
    }


def _comparison(first: _Compared, second: _Compared) -> dict[str, Any]:
    one, two = _compared_out(first), _compared_out(second)
    lines = unified_diff(
        first.version.content,
        second.version.content,
        label_before=f"{one['prompt_id']} v{one['version']}",
        label_after=f"{two['prompt_id']} v{two['version']}",
    )
    vars1, vars2 = one["variables"], two["variables"]
    metrics = CompareMetricsOut(
        length_difference=two["length"] - one["length"],
        token_difference=two["tokens"] - one["tokens"],
        shared_variables=[v for v in vars1 if v in vars2],
        only_in_prompt1=[v for v in vars1 if v not in vars2],
        only_in_prompt2=[v for v in vars2 if v not in vars1],
        identical=first.version.content == second.version.content,
    )
    return {
        "prompt1": ComparedPromptOut(**one),
        "prompt2": ComparedPromptOut(**two),
        "diff": "\n".join(lines),
        "diff_lines": lines,
        "metrics": metrics,
        "results": None,
    }


def _compare_check_run(payload: PromptCompareIn, first: _Compared, second: _Compared) -> None:
    if not payload.message:
        raise ContentInvalid(RUN_NEEDS_MESSAGE, field="message")
    for field, c in (("version1", first), ("version2", second)):
        if c.version.pk != c.prompt.active_version_id:
            raise ContentInvalid(RUN_ACTIVE_ONLY.format(version=c.version.version), field=field)


def prompt_comparison(payload: PromptCompareIn) -> tuple[dict[str, Any], str]:
    """Both prompt versions side by side (a diff, variables, lengths), and the component a
    run answers as; with `run`, ContentInvalid unless it can run."""
    first, second = _compare_load(payload)
    if payload.run:
        _compare_check_run(payload, first, second)
    return _comparison(first, second), payload.component or first.prompt.component
