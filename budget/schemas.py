"""Request and response schemas of the budget API (TEKTON_CONTRACT.md, "Budget").

Inputs accept snake_case and camelCase. Money leaves the API as decimal US-dollar strings
computed from exact integers; it comes in as a decimal string or number.
"""

from decimal import Decimal
from typing import Any, Literal

from ninja import Schema
from pydantic import AliasChoices, ConfigDict, Field
from pydantic.alias_generators import to_camel

PeriodName = Literal["daily", "weekly", "monthly"]
PolicyName = Literal["ignore", "warn", "enforce"]
GroupBy = Literal["provider", "model", "component", "task_type", "status"]
StatusName = Literal["ok", "error", "cancelled"]


def _aliases(name: str) -> AliasChoices:
    return AliasChoices(name, to_camel(name))


class ErrorOut(Schema):
    error: str
    code: str


class PeriodStatusOut(Schema):
    usage: str
    limit: str | None
    remaining: str | None
    policy: PolicyName
    percentage: float | None
    reserved: str
    window_start: str


class BudgetOut(Schema):
    daily: PeriodStatusOut
    weekly: PeriodStatusOut
    monthly: PeriodStatusOut
    budget_enabled: bool


class LimitOut(Schema):
    id: int | None
    provider: str
    component: str | None
    scope: str
    limit_amount: str | None
    enforcement: PolicyName
    start_date: str | None


class SettingsOut(Schema):
    daily: list[LimitOut]
    weekly: list[LimitOut]
    monthly: list[LimitOut]


class _ScopeIn(Schema):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    period: PeriodName
    provider: str = Field(default="all", min_length=1, max_length=50)
    component: str | None = Field(default=None, min_length=1, max_length=100)


class LimitIn(_ScopeIn):
    # null removes the limit (the scope keeps its policy and is only tracked).
    limit_amount: Decimal | None = Field(validation_alias=_aliases("limit_amount"))
    enforcement: PolicyName | None = None


class PolicyIn(_ScopeIn):
    policy: PolicyName


class LimitSetOut(LimitOut):
    success: bool
    period: PeriodName


class UsageFilterIn(Schema):
    model_config = ConfigDict(populate_by_name=True)

    period: PeriodName = "daily"
    provider: str | None = None
    model: str | None = None
    component: str | None = None
    status: StatusName | None = None
    limit: int = Field(default=100, ge=1, le=1000)


class UsageRecordOut(Schema):
    """One ledger row (llm's UsageOut is the usage of one answer)."""

    id: int
    timestamp: str
    provider: str
    model: str
    component: str
    task_type: str
    input_tokens: int
    output_tokens: int
    cost: str
    metadata: dict[str, Any]


class UsageListOut(Schema):
    period: PeriodName
    provider: str
    count: int
    usage: list[UsageRecordOut]


class SummaryFilterIn(Schema):
    model_config = ConfigDict(populate_by_name=True)

    period: PeriodName = "daily"
    group_by: GroupBy | None = None
    # ninja maps query keys by field name or alias, so camelCase is a field of its own.
    group_by_camel: GroupBy | None = Field(default=None, alias="groupBy")

    @property
    def grouping(self) -> GroupBy:
        return self.group_by or self.group_by_camel or "provider"


class GroupOut(Schema):
    cost: str
    input_tokens: int
    output_tokens: int
    count: int


class SummaryOut(Schema):
    period: PeriodName
    group_by: GroupBy
    total_cost: str
    total_input_tokens: int
    total_output_tokens: int
    total_tokens: int
    count: int
    groups: dict[str, GroupOut]


class TierModelOut(Schema):
    provider: str
    model: str
    cost_per_1k_tokens: str
    input_cost_per_token: str
    output_cost_per_token: str


class ModelTiersOut(Schema):
    free: list[TierModelOut]
    low: list[TierModelOut]
    medium: list[TierModelOut]
    high: list[TierModelOut]
