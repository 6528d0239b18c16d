"""Step 1 of a request: act as the caller may.

The caller needs the `messages` scope; a key pinned to components acts only as them (and
only on their conversations, contexts.pinning); the request is counted against the key's
rate limit with its estimated tokens, which `Admission.settle` later replaces by the
provider's count (or gives back when nothing was served).
"""

import logging
from dataclasses import dataclass, replace

from asgiref.sync import sync_to_async

from access.auth import estimate_tokens_of, rate_limit_hit, require_scope
from access.ratelimit import TokenCharge, rate_limiter
from contexts.pinning import component_for
from llm.gateway.request import Caller, LLMRequest
from llm.providers.base import Usage
from rhetor_site.db import released

logger = logging.getLogger("llm")


def _acting_request(caller: Caller, request: LLMRequest) -> tuple[LLMRequest, TokenCharge | None]:
    principal = caller.principal
    require_scope(principal, "messages")
    component = component_for(principal, component=request.component, context_id=request.context_id)
    if component != request.component:
        request = replace(request, component=component)
    charge = rate_limit_hit(principal, tokens=estimate_tokens_of(caller.size_bytes))
    return request, charge


_aacting_request = sync_to_async(released(_acting_request))  # may read a context's owner


def _settle(charge: TokenCharge, actual_tokens: int) -> None:
    try:
        rate_limiter().settle(charge, actual_tokens)
    except Exception:  # the request is already served; a lost correction is only logged
        logger.warning("could not settle the token rate limit of rk_%s", charge.subject)


_asettle = sync_to_async(_settle, thread_sensitive=False)


@dataclass
class Admission:
    """A request as its caller may make it, with its rate-limit charge."""

    request: LLMRequest
    charge: TokenCharge | None = None

    async def settle(self, usage: Usage | None, *, served: bool = True) -> None:
        """Replace the estimated tokens by the provider's count (input + output); a request
        that was not served gives its tokens back; without a count (the provider failed
        mid-stream, the client went away) the estimate stands. Once."""
        charge, self.charge = self.charge, None
        if charge is None:
            return
        if not served:
            await _asettle(charge, 0)
        elif usage is not None:
            await _asettle(charge, usage.input_tokens + usage.output_tokens)


async def admit(caller: Caller, request: LLMRequest) -> Admission:
    """Forbidden (403) for a missing scope or another component's request, RateLimited
    (429) over the key's limit; else the request as the caller makes it."""
    principal = caller.principal
    if caller.internal or (principal.is_anonymous and not principal.components):
        # Rhetor's own calls and the anonymous loopback user: every scope, no pin, no limit.
        return Admission(request)
    if not principal.components and not _limited(caller):
        require_scope(principal, "messages")  # no pin, no limit: no thread hop
        return Admission(request)
    acting, charge = await _aacting_request(caller, request)
    return Admission(acting, charge)


def _limited(caller: Caller) -> bool:
    principal = caller.principal
    return principal.requests_per_minute > 0 or principal.tokens_per_minute > 0
