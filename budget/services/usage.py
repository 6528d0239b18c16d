"""What budget reads of a request's token usage.

The gateway passes its own usage type (llm's `Usage`); budget only reads these fields and
imports nothing from the layer above it.
"""

from typing import Protocol


class TokenUsage(Protocol):
    @property
    def input_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...

    # Where the counts come from: "provider" (reported upstream), "estimate" or "partial"
    # (UsageRecord.Source).
    @property
    def source(self) -> str: ...
