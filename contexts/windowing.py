"""Fitting history into a model's context window. Pure functions: no ORM, no I/O.

    budget = history_budget(context_window=8192, max_tokens=1000, fixed_tokens=120)
    summary, kept = fit_with_summary(summary=bundle.summary, summary_tokens=..., items=...,
                                     budget_tokens=budget)
    text, truncated = truncate_to_tokens(huge_text, max_tokens=budget)

Every item costs its tokens plus `MESSAGE_OVERHEAD` (role markers, separators).
"""

from collections.abc import Sequence
from typing import Protocol, TypeVar

from rhetor_site.tokens import MESSAGE_OVERHEAD, count_tokens, head_of

# Room kept free in every window for formatting the tokenizer may add.
WINDOW_SAFETY_TOKENS = 64
# When a request does not say how much output it wants, this share of the window is kept.
DEFAULT_OUTPUT_SHARE = 4  # a quarter, capped at DEFAULT_OUTPUT_CAP
DEFAULT_OUTPUT_CAP = 4096
TRUNCATION_MARKER = "\n[… truncated {n} tokens …]"


class HasTokens(Protocol):
    @property
    def tokens(self) -> int: ...


class HasRoleAndTokens(HasTokens, Protocol):
    @property
    def role(self) -> str: ...


T = TypeVar("T", bound=HasTokens)


def item_cost(tokens: int) -> int:
    return tokens + MESSAGE_OVERHEAD


def output_reserve(*, context_window: int, max_tokens: int | None) -> int:
    """Tokens kept free for the answer: `max_tokens` when the request sets it."""
    if max_tokens:
        return max_tokens
    return min(DEFAULT_OUTPUT_CAP, context_window // DEFAULT_OUTPUT_SHARE)


def history_budget(
    *,
    context_window: int,
    max_tokens: int | None,
    fixed_tokens: int,
    safety_tokens: int = WINDOW_SAFETY_TOKENS,
) -> int:
    """Tokens left for history (and its summary) once the system prompt and new turns
    (`fixed_tokens`, overheads included), the output and a safety margin are reserved.
    Never negative."""
    reserve = output_reserve(context_window=context_window, max_tokens=max_tokens)
    return max(0, context_window - reserve - fixed_tokens - safety_tokens)


def fit_history(*, items: Sequence[T], budget_tokens: int) -> list[T]:
    """The most recent contiguous items whose cost fits `budget_tokens`, oldest first.

    Stops at the first item (from the newest) that does not fit, so the model never sees a
    gap in the conversation. The kept history never starts with an assistant turn (some
    providers reject that): a leading assistant item is dropped.
    """
    kept: list[T] = []
    used = 0
    for item in reversed(items):
        cost = item_cost(item.tokens)
        if used + cost > budget_tokens:
            break
        kept.append(item)
        used += cost
    kept.reverse()
    while kept and getattr(kept[0], "role", None) == "assistant":
        kept.pop(0)
    return kept


def fit_with_summary(
    *, summary: str | None, summary_tokens: int, items: Sequence[T], budget_tokens: int
) -> tuple[str | None, list[T]]:
    """Fit the archive summary (sent first, as a system message) and the history.

    The summary is included when it fits the budget; it is reserved first, because it
    stands for every turn that is no longer in the history. If it does not fit, it is
    truncated to half the budget.
    """
    if not summary:
        return None, fit_history(items=items, budget_tokens=budget_tokens)
    cost = item_cost(summary_tokens)
    if cost > budget_tokens // 2:
        summary, _ = truncate_to_tokens(summary, max(0, budget_tokens // 2 - MESSAGE_OVERHEAD))
        cost = item_cost(count_tokens(summary)) if summary else 0
    if not summary:
        return None, fit_history(items=items, budget_tokens=budget_tokens)
    return summary, fit_history(items=items, budget_tokens=budget_tokens - cost)


def truncate_to_tokens(text: str, max_tokens: int) -> tuple[str, bool]:
    """`text` cut to at most `max_tokens` tokens, marker included, and whether it was cut.

    The head of the text is kept and a visible marker says how many tokens were dropped:
    "…[… truncated 1234 tokens …]". When not even the marker fits, the result is "".
    """
    total = count_tokens(text)
    if total <= max_tokens:
        return text, False
    marker = TRUNCATION_MARKER.format(n=total)
    # The marker's own size, with a digit of slack for the final count.
    room = max_tokens - count_tokens(marker) - 1
    if room <= 0:
        return "", True
    head = head_of(text, room)
    dropped = total - count_tokens(head)
    result = head + TRUNCATION_MARKER.format(n=dropped)
    while count_tokens(result) > max_tokens and head:
        head = head_of(head, count_tokens(head) - 1)
        dropped = total - count_tokens(head)
        result = head + TRUNCATION_MARKER.format(n=dropped)
    return result, True
