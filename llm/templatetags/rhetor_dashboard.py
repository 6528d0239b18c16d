"""`{% rhetor_dashboard as dash %}`: the operator dashboard's data (llm.dashboard)."""

from typing import Any

from django import template

from llm.dashboard import dashboard_context

register = template.Library()


@register.simple_tag
def rhetor_dashboard() -> dict[str, Any]:
    return dashboard_context()
