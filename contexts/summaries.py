"""Summaries of conversation turns: by a model on the `summarize` route, or extractive.

Summaries roll forward: the summary of an archive batch is made from the previous summary
plus the newly archived turns, so the latest summary always covers every archived turn.
"""

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from rhetor_site.tokens import count_tokens

logger = logging.getLogger("contexts")

SUMMARY_MAX_TOKENS = 300
# What a summary request may contain, so it fits even a 4,000-token model.
SUMMARY_INPUT_MAX_TOKENS = 2400
SUMMARY_COMPONENT = "rhetor"  # summaries are Rhetor's own calls, routed as rhetor/summarize
SUMMARY_TASK_TYPE = "summarize"
TURN_EXCERPT_CHARS = 240
SUMMARY_SYSTEM_PROMPT = (
    "You summarise conversations so that an assistant can continue them later. Keep names, "
    "facts, decisions, numbers, code identifiers and open questions; drop pleasantries. "
    "Write plain prose or short bullet points, no preamble."
)
EXTRACTIVE_HEADER = "Summary of the earlier conversation (extractive):"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Turn:
    role: str
    content: str


@dataclass(frozen=True)
class GeneratedSummary:
    content: str
    source: str  # ContextSummary.Source value
    provider: str = ""
    model: str = ""


def _excerpt(content: str, limit: int = TURN_EXCERPT_CHARS) -> str:
    """The first sentence of a turn, whitespace collapsed, at most `limit` characters."""
    text = _SPACE.sub(" ", content).strip()
    first = _SENTENCE_END.split(text, maxsplit=1)[0]
    if len(first) > limit:
        first = first[: limit - 1].rstrip() + "…"
    return first


def extractive_summary(
    *, previous: str | None, turns: Sequence[Turn], max_tokens: int = SUMMARY_MAX_TOKENS
) -> str:
    """A deterministic summary: the previous summary (shortened to at most half the
    budget), then the first sentence of each turn. When the turns do not all fit, the
    earliest and the latest are kept and the middle is elided with a count."""
    from contexts.windowing import truncate_to_tokens

    parts = [EXTRACTIVE_HEADER]
    used = count_tokens(EXTRACTIVE_HEADER) + 1
    if previous:
        body = previous.removeprefix(EXTRACTIVE_HEADER).strip()
        earlier, _ = truncate_to_tokens(f"Earlier: {body}", max(0, max_tokens // 2))
        if earlier:
            parts.append(earlier)
            used += count_tokens(earlier) + 1
    lines = [f"- {turn.role}: {_excerpt(turn.content)}" for turn in turns if turn.content.strip()]
    costs = [count_tokens(line) + 1 for line in lines]
    head: list[int] = []
    tail: list[int] = []
    left, right = 0, len(lines) - 1
    room = max_tokens - used - 12  # room for the elision line
    take_head = True
    while left <= right:
        index = left if take_head else right
        if costs[index] > room:
            break
        room -= costs[index]
        if take_head:
            head.append(index)
            left += 1
        else:
            tail.append(index)
            right -= 1
        take_head = not take_head
    chosen = head + list(reversed(tail))
    elided = len(lines) - len(chosen)
    for position, index in enumerate(chosen):
        if elided and position == len(head):
            parts.append(f"- … {elided} more turn{'s' if elided != 1 else ''} …")
        parts.append(lines[index])
    if elided and len(head) == len(chosen):
        parts.append(f"- … {elided} more turn{'s' if elided != 1 else ''} …")
    return "\n".join(parts)


def summary_prompt(*, previous: str | None, turns: Sequence[Turn], max_tokens: int) -> str:
    """The user message of a summary request, within SUMMARY_INPUT_MAX_TOKENS: the
    previous summary and as many of the latest turns as fit (each turn shortened)."""
    from contexts.windowing import truncate_to_tokens

    words = max(20, int(max_tokens * 0.7))
    instruction = (
        f"Summarise the conversation above in at most {words} words, "
        "as a continuation of the previous summary if there is one."
    )
    budget = SUMMARY_INPUT_MAX_TOKENS - count_tokens(instruction) - 16
    previous_block = ""
    if previous:
        previous_block, _ = truncate_to_tokens(previous, budget // 3)
        previous_block = f"Previous summary:\n{previous_block}\n\n"
        budget -= count_tokens(previous_block)
    lines: list[str] = []
    for turn in reversed(turns):
        line, _ = truncate_to_tokens(f"{turn.role}: {turn.content.strip()}", 400)
        cost = count_tokens(line) + 1
        if cost > budget:
            break
        lines.append(line)
        budget -= cost
    lines.reverse()
    omitted = len(turns) - len(lines)
    omitted_line = f"({omitted} earlier turns omitted)\n" if omitted else ""
    body = "\n".join(lines)
    return f"{previous_block}Conversation:\n{omitted_line}{body}\n\n{instruction}"


class SummaryModel(Protocol):
    """A model that writes a summary: given the instructions and the prompt, the summary,
    or None when no model answered (the llm app provides it: llm/summaries.py)."""

    async def __call__(
        self, *, system: str, prompt: str, context_id: str, max_tokens: int
    ) -> GeneratedSummary | None: ...


_summary_model: SummaryModel | None = None


def summary_model_set(model: SummaryModel | None) -> None:
    """Use `model` for summaries (the llm app calls this once it is ready); None: only
    extractive summaries."""
    global _summary_model
    _summary_model = model


async def agenerate_summary(
    *,
    previous: str | None,
    turns: Sequence[Turn],
    context_id: str,
    max_tokens: int = SUMMARY_MAX_TOKENS,
) -> GeneratedSummary:
    """Summarise with the summary model (the `summarize` route); extractive when no model
    answers (no provider available, an upstream error, an empty answer). Never raises a
    domain error. The call stores nothing in any context."""
    fallback = GeneratedSummary(
        content=extractive_summary(previous=previous, turns=turns, max_tokens=max_tokens),
        source="extractive",
    )
    if not turns or _summary_model is None:
        return fallback
    generated = await _summary_model(
        system=SUMMARY_SYSTEM_PROMPT,
        prompt=summary_prompt(previous=previous, turns=turns, max_tokens=max_tokens),
        context_id=context_id,
        max_tokens=max_tokens,
    )
    return generated or fallback
