"""Pure windowing and token counting (no database)."""

from dataclasses import dataclass

import pytest

from contexts.summaries import EXTRACTIVE_HEADER, Turn, extractive_summary
from contexts.windowing import (
    fit_history,
    fit_with_summary,
    history_budget,
    truncate_to_tokens,
)
from rhetor_site.tokens import MESSAGE_OVERHEAD, count_tokens, estimate_tokens, head_of


@dataclass(frozen=True)
class Item:
    role: str
    tokens: int
    name: str


def items(*specs: tuple[str, int]) -> list[Item]:
    return [Item(role, tokens, f"m{i}") for i, (role, tokens) in enumerate(specs)]


def test_tokens_are_counted_with_the_cl100k_encoding_offline() -> None:
    # cl100k_base: "Hello", " world", ",", " this", " is", " a", " test", " of", " token",
    # "ization", "." -> 11 tokens.
    assert count_tokens("Hello world, this is a test of tokenization.") == 11
    assert estimate_tokens("") == 0
    assert estimate_tokens("a") == 1


def test_gpt_4o_uses_its_own_encoding() -> None:
    text = "Rhetor keeps conversations within the window of each model."
    assert count_tokens(text, model="gpt-4o") > 0
    assert count_tokens(text, model="gpt-4o") <= count_tokens(text) + 2


def test_head_of_keeps_at_most_n_tokens() -> None:
    text = "one two three four five six seven"
    assert head_of(text, 3) == "one two three"
    assert head_of(text, 100) == text
    assert head_of(text, 0) == ""


def test_fit_history_keeps_the_most_recent_items_that_fit() -> None:
    history = items(("user", 10), ("assistant", 10), ("user", 10), ("assistant", 10))
    per_item = 10 + MESSAGE_OVERHEAD

    kept = fit_history(items=history, budget_tokens=per_item * 2)

    assert [i.name for i in kept] == ["m2", "m3"]


def test_fit_history_stops_at_the_first_item_that_does_not_fit() -> None:
    # The big middle item does not fit, so nothing older is kept either (no gaps).
    history = items(("user", 5), ("assistant", 500), ("user", 5))

    kept = fit_history(items=history, budget_tokens=100)

    assert [i.name for i in kept] == ["m2"]


def test_fit_history_never_starts_with_an_assistant_turn() -> None:
    history = items(("user", 10), ("assistant", 10), ("user", 10), ("assistant", 10))
    per_item = 10 + MESSAGE_OVERHEAD

    kept = fit_history(items=history, budget_tokens=per_item * 3)

    assert [i.name for i in kept] == ["m2", "m3"]


def test_fit_history_with_no_budget_keeps_nothing() -> None:
    assert fit_history(items=items(("user", 1)), budget_tokens=0) == []


def test_fit_with_summary_reserves_the_summary_first() -> None:
    history = items(("user", 10), ("assistant", 10), ("user", 10), ("assistant", 10))
    summary = "The user asked about prices."
    summary_tokens = count_tokens(summary)
    budget = (summary_tokens + MESSAGE_OVERHEAD) + 2 * (10 + MESSAGE_OVERHEAD)

    sent_summary, kept = fit_with_summary(
        summary=summary, summary_tokens=summary_tokens, items=history, budget_tokens=budget
    )

    assert sent_summary == summary
    assert [i.name for i in kept] == ["m2", "m3"]


def test_fit_with_summary_truncates_a_summary_larger_than_half_the_budget() -> None:
    summary = "word " * 400
    sent_summary, kept = fit_with_summary(
        summary=summary, summary_tokens=count_tokens(summary), items=[], budget_tokens=100
    )

    assert sent_summary is not None
    assert count_tokens(sent_summary) <= 50 - MESSAGE_OVERHEAD
    assert "truncated" in sent_summary
    assert kept == []


@pytest.mark.parametrize(
    ("_case", "window", "max_tokens", "expected"),
    [
        ("explicit max_tokens", 4000, 500, 4000 - 500 - 100 - 64),
        ("default output share", 4000, None, 4000 - 1000 - 100 - 64),
        ("default output capped", 200000, None, 200000 - 4096 - 100 - 64),
        ("never negative", 500, 1000, 0),
    ],
)
def test_history_budget(_case: str, window: int, max_tokens: int | None, expected: int) -> None:
    assert (
        history_budget(context_window=window, max_tokens=max_tokens, fixed_tokens=100) == expected
    )


def test_truncate_to_tokens_leaves_short_text_alone() -> None:
    assert truncate_to_tokens("short text", 100) == ("short text", False)


def test_truncate_to_tokens_cuts_with_a_visible_marker_within_the_limit() -> None:
    text = " ".join(f"word{i}" for i in range(3000))
    total = count_tokens(text)

    cut, truncated = truncate_to_tokens(text, 200)

    assert truncated is True
    assert count_tokens(cut) <= 200
    assert cut.startswith("word0 word1 word2")
    kept_head = cut.split("\n[…")[0]
    dropped = total - count_tokens(kept_head)
    assert cut.endswith(f"\n[… truncated {dropped} tokens …]")


def test_truncate_to_tokens_without_room_for_the_marker_is_empty() -> None:
    assert truncate_to_tokens("word " * 100, 3) == ("", True)


def test_extractive_summary_keeps_both_ends_and_counts_the_elided_middle() -> None:
    turns = [Turn("user" if i % 2 == 0 else "assistant", f"Point {i}. Detail.") for i in range(200)]

    summary = extractive_summary(previous=None, turns=turns, max_tokens=120)

    lines = summary.splitlines()
    assert lines[0] == EXTRACTIVE_HEADER
    assert lines[1] == "- user: Point 0."
    assert lines[-1] == "- assistant: Point 199."
    elision = next(line for line in lines if line.startswith("- … "))
    shown = len(lines) - 2
    assert elision == f"- … {200 - shown} more turns …"
    assert count_tokens(summary) <= 120


def test_extractive_summary_rolls_the_previous_summary_forward() -> None:
    summary = extractive_summary(
        previous=f"{EXTRACTIVE_HEADER}\n- user: We chose PostgreSQL.",
        turns=[Turn("user", "Now the cache. Which one?")],
    )

    assert summary.splitlines() == [
        EXTRACTIVE_HEADER,
        "Earlier: - user: We chose PostgreSQL.",
        "- user: Now the cache.",
    ]
