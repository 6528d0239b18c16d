"""Step 2 of a request: prepare what will be sent.

The route (by component and task type), the plan of models to try, the system prompt
(with its variables), the stored history and its rolling summary — read in one database
step — and a RequestBuilder that fits all of it into each target model's context window.
"""

from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings

from contexts.outbox import kept_messages
from contexts.selectors import (
    EMPTY_HISTORY,
    HistoryBundle,
    acontext_window_for,
    context_history_for_request,
)
from contexts.services import NewMessage
from contexts.windowing import fit_with_summary, history_budget, item_cost, truncate_to_tokens
from llm.gateway.plan import Plan, plan_targets
from llm.gateway.request import LLMRequest
from llm.providers import get_provider
from llm.providers.base import ChatMessage, CompletionRequest
from llm.route_table import aroute_table
from llm.routes import Target
from prompts.selectors import ResolvedPrompt, system_prompt_resolve
from rhetor_site.db import released
from rhetor_site.tokens import count_tokens

DEFAULT_CONTEXT_WINDOW = 8192


@dataclass(frozen=True)
class HistoryItem:
    role: str
    content: str
    tokens: int


def catalogue_window(target: Target) -> int | None:
    """The window the provider's model list gives (None when it does not list the model):
    what the operator's window table falls back to, and what a model the table was not
    asked about (a budget-steering alternative) is fitted to."""
    provider = get_provider(target.provider)
    if provider is not None:
        for info in provider.models():
            if info.id == target.model:
                return info.context_window
    return None


def new_messages_to_store(
    stored: list[tuple[str, str]], sent: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The part of a /chat conversation the context does not hold yet: the client may
    resend the whole conversation, or only its tail; the longest overlap of the stored
    tail with the sent head is not stored twice."""
    for k in range(min(len(stored), len(sent)), 0, -1):
        if stored[-k:] == sent[:k]:
            return sent[k:]
    return sent


@dataclass(frozen=True)
class Window:
    """How a request was fitted into one target's context window."""

    history_budget: int
    new_truncated_from: int | None  # the new turn's tokens when it had to be cut


class RequestBuilder:
    """Builds the provider request for each target of a plan: the system prompt, the
    summary of archived turns, the history that fits the target model's context window
    (contexts.windowing), and the new turns — the last one truncated with a visible
    marker if even it alone would not fit."""

    def __init__(
        self,
        *,
        system: str | None,
        history: list[HistoryItem],
        new: tuple[ChatMessage, ...],
        summary: str | None = None,
        summary_tokens: int = 0,
        windows: dict[Target, int] | None = None,
    ) -> None:
        self.system = system
        self.history = history
        self.new = new
        self.summary = summary
        self.summary_tokens = summary_tokens
        self.windows = windows or {}
        self.fitted: dict[Target, Window] = {}
        self.system_tokens = item_cost(count_tokens(system)) if system else 0
        self.new_tokens = [count_tokens(m.content) for m in new]

    def __call__(self, target: Target, plan: Plan) -> CompletionRequest:
        window = self.windows.get(target) or catalogue_window(target) or DEFAULT_CONTEXT_WINDOW
        new = self.new
        fixed = self.system_tokens + sum(item_cost(t) for t in self.new_tokens)
        budget = history_budget(
            context_window=window, max_tokens=plan.max_tokens, fixed_tokens=fixed
        )
        truncated_from = None
        if budget == 0 and new:
            # The new turn alone does not fit: cut it to what the window leaves for it.
            others = fixed - item_cost(self.new_tokens[-1])
            room = history_budget(
                context_window=window, max_tokens=plan.max_tokens, fixed_tokens=others
            ) - item_cost(0)
            text, cut = truncate_to_tokens(new[-1].content, max(room, 0))
            if cut:
                truncated_from = self.new_tokens[-1]
                new = (*new[:-1], ChatMessage(new[-1].role, text))
        summary, kept = fit_with_summary(
            summary=self.summary,
            summary_tokens=self.summary_tokens,
            items=self.history,
            budget_tokens=budget,
        )
        self.fitted[target] = Window(history_budget=budget, new_truncated_from=truncated_from)
        system_parts = [self.system or ""]
        if summary:
            system_parts.append(f"Summary of the earlier conversation:\n{summary}")
        system = "\n\n".join(p for p in system_parts if p) or None
        return CompletionRequest(
            model=target.model,
            messages=tuple(ChatMessage(i.role, i.content) for i in kept) + new,  # type: ignore[arg-type]
            system=system,
            temperature=plan.temperature,
            max_tokens=plan.max_tokens,
            timeout=settings.RHETOR_PROVIDER_TIMEOUT,
        )


@dataclass
class Prepared:
    request: LLMRequest
    plan: Plan
    builder: RequestBuilder
    to_store: list[NewMessage]
    prompt: ResolvedPrompt | None = None


def _split_system(messages: tuple[ChatMessage, ...]) -> tuple[list[str], tuple[ChatMessage, ...]]:
    system = [m.content for m in messages if m.role == "system"]
    turns = tuple(m for m in messages if m.role != "system")
    return system, turns


@dataclass(frozen=True)
class _Loaded:
    prompt: ResolvedPrompt | None
    bundle: HistoryBundle


def _load_request(*, request: LLMRequest) -> _Loaded:
    """What a request reads from the database, in one step: the system prompt and the
    stored history. One thread hop instead of one per read, and the pooled connection is
    released right after. (The operator's default model comes with the route table.)"""
    prompt = system_prompt_resolve(
        prompt_id=request.prompt_id,
        component=request.resolved_component or None,
        task_type=request.task_type,
        variables=request.prompt_variables,
    )
    bundle = (
        context_history_for_request(context_id=request.context_id)
        if request.store
        else EMPTY_HISTORY
    )
    return _Loaded(prompt=prompt, bundle=bundle)


_aload_request = sync_to_async(released(_load_request))


async def prepare(request: LLMRequest) -> Prepared:
    """Resolve the route and build what will be sent. Raises the request's 4xx errors."""
    table = await aroute_table()
    route = table.lookup(component=request.resolved_component, task_type=request.task_type)
    if request.store or request.prompt_id or request.resolved_component:
        loaded = await _aload_request(request=request)
    else:
        # A stateless request without component or prompt reads nothing: no thread hop.
        loaded = _Loaded(prompt=None, bundle=EMPTY_HISTORY)
    prompt, bundle = loaded.prompt, loaded.bundle
    default_target = table.default_target
    plan = await plan_targets(route=route, options=request.options, default_target=default_target)
    stored = [HistoryItem(m.role, m.content, m.tokens) for m in bundle.messages]
    if request.store:  # turns kept through a database outage are part of the conversation
        stored += [
            HistoryItem(m.role, m.content, m.tokens or count_tokens(m.content))
            for m in kept_messages(request.context_id)
        ]
    system_parts: list[str] = [prompt.text] if prompt else []
    summary: str | None = None
    if request.whole_conversation:
        sent: list[tuple[str, str]] = [(m.role, m.content) for m in request.messages]
        fresh = new_messages_to_store([(m.role, m.content) for m in stored], sent)
        conversation_system, turns = _split_system(request.messages)
        system_parts += conversation_system
        # The client's conversation is what is sent: all but its last turn are history.
        history = [HistoryItem(m.role, m.content, count_tokens(m.content)) for m in turns[:-1]]
        new = turns[-1:]
    else:
        fresh = [(m.role, m.content) for m in request.messages]
        system_parts += [i.content for i in stored if i.role == "system"]
        history = [i for i in stored if i.role != "system"]
        new_system, new = _split_system(request.messages)
        system_parts += new_system
        summary = bundle.summary
    to_store = (
        [NewMessage(role, content, tokens=count_tokens(content)) for role, content in fresh]
        if request.store
        else []  # nothing is stored: no tokenizer work for it
    )
    system = "\n\n".join(part for part in system_parts if part) or None
    windows = {
        t: await acontext_window_for(
            provider=t.provider, model=t.model, catalogue=catalogue_window(t)
        )
        for t in plan.targets
    }
    builder = RequestBuilder(
        system=system,
        history=history,
        new=new,
        summary=summary,
        summary_tokens=bundle.summary_tokens,
        windows=windows,
    )
    return Prepared(request=request, plan=plan, builder=builder, to_store=to_store, prompt=prompt)
