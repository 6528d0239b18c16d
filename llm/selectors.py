"""Reads of the llm app."""

from asgiref.sync import sync_to_async
from django.db.models import QuerySet

from llm.gateway.plan import first_available_real_target
from llm.models import DefaultModel, TaskRoute
from llm.providers import all_providers
from llm.routes import SIMULATED


def default_model_get() -> DefaultModel | None:
    return DefaultModel.objects.filter(pk=DefaultModel.SINGLETON_ID).first()


adefault_model_get = sync_to_async(default_model_get)


async def provider_availability() -> dict[str, bool]:
    return {pid: await p.is_available() for pid, p in all_providers().items()}


async def default_choice_get(available: dict[str, bool]) -> tuple[str, str]:
    """The default shown to clients is always an available provider: the operator's
    choice when it is available, else the first available real provider, else simulated."""
    chosen = await adefault_model_get()
    if chosen is not None and available.get(chosen.provider):
        return chosen.provider, chosen.model
    target = await first_available_real_target()
    if target is not None:
        return target.provider, target.model
    return SIMULATED, all_providers()[SIMULATED].default_model()


def task_route_list() -> QuerySet[TaskRoute]:
    return TaskRoute.objects.order_by("name")
