"""A key pinned to components reaches only its components' conversations.

Used by the context endpoints, the WebSocket's SUBSCRIBE and the gateway's acting step
(llm.gateway.acting), so the rule is written once.
"""

from asgiref.sync import sync_to_async
from django.http import HttpRequest

from access.auth import Principal, request_principal
from access.errors import COMPONENT_FORBIDDEN, CONTEXT_FORBIDDEN, Forbidden
from contexts.models import Context
from contexts.services import component_of


def _stored_owner(context_id: str) -> str | None:
    return Context.objects.filter(context_id=context_id).values_list("component", flat=True).first()


def context_check(principal: Principal, context_id: str, *, owner: str | None = None) -> None:
    """A pinned key may use only its components' contexts: `<component>:<name>` ids of
    its components, and unprefixed ids that do not exist yet or that a request of its
    components created. `owner` is the stored component when the caller has the row."""
    if not principal.components:
        return
    prefix = component_of(context_id)
    if prefix:
        if prefix not in principal.components:
            raise Forbidden(CONTEXT_FORBIDDEN.format(context_id=context_id), context=context_id)
        if owner is None:
            return
    stored = owner if owner is not None else _stored_owner(context_id)
    if stored is not None and stored not in principal.components:
        raise Forbidden(CONTEXT_FORBIDDEN.format(context_id=context_id), context=context_id)


acontext_check = sync_to_async(context_check)


def component_for(principal: Principal, *, component: str | None, context_id: str) -> str | None:
    """The component a request acts as. A pinned key may name only its own components
    and contexts; when it names none, the context's prefix (if its own) or the key's first
    component is used. Unpinned keys pass the request's choice through."""
    if not principal.components:
        return component
    if component is not None and component not in principal.components:
        raise Forbidden(COMPONENT_FORBIDDEN.format(component=component), component=component)
    context_check(principal, context_id)
    return component or component_of(context_id) or principal.components[0]


def context_guard(request: HttpRequest, context_id: str) -> None:
    """For the context endpoints: a pinned key without `contexts:admin` reaches only its
    components' contexts (403 otherwise)."""
    principal = request_principal(request)
    if principal.components and not principal.has_scope("contexts:admin"):
        context_check(principal, context_id)


async def acontext_guard(request: HttpRequest, context_id: str) -> None:
    principal = request_principal(request)
    if principal.components and not principal.has_scope("contexts:admin"):
        await acontext_check(principal, context_id)
