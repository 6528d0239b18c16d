"""The door through which conversation summaries reach a model (contexts.summaries asks;
this translates). Routed as component `rhetor`, task `summarize`, stored nowhere."""

import logging

from contexts.summaries import SUMMARY_COMPONENT, SUMMARY_TASK_TYPE, GeneratedSummary
from llm.gateway import INTERNAL, LLMRequest, RouteOptions, llm_complete
from llm.providers.base import ChatMessage, ProviderError
from llm.routes import SIMULATED
from rhetor_site.errors import RhetorError

logger = logging.getLogger("llm")


async def summary_from_model(
    *, system: str, prompt: str, context_id: str, max_tokens: int
) -> GeneratedSummary | None:
    """The `summarize` route's answer; None when no model answered usefully."""
    request = LLMRequest(
        messages=(ChatMessage("system", system), ChatMessage("user", prompt)),
        context_id=context_id,
        component=SUMMARY_COMPONENT,
        task_type=SUMMARY_TASK_TYPE,
        options=RouteOptions(max_tokens=max_tokens),
        store=False,
    )
    try:
        result = await llm_complete(request, INTERNAL)
    except (RhetorError, ProviderError) as exc:
        logger.info("summary of %r is extractive: %s", context_id, exc)
        return None
    text = result.text.strip()
    if not text or result.provider == SIMULATED:
        return None  # the simulated provider echoes; it is no summariser
    return GeneratedSummary(
        content=text, source="model", provider=result.provider, model=result.model
    )
