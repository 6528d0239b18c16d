"""The chat page: a browser client that speaks the Hephaestus protocol over `/ws`
(TEKTON_CONTRACT.md, "WebSocket /ws"), served at `/ui/`.

The page is plain HTML and JavaScript (no build step, nothing from a CDN). It registers
as the Tekton UI, subscribes to its context, so every message appended to that context
by any worker appears live, and streams its own requests' replies.
"""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

DEFAULT_CONTEXT = "hephaestus:chat"


@require_GET
def chat_page(request: HttpRequest) -> HttpResponse:
    """The page; `?context=<id>` chooses the conversation, `?budget=1` also subscribes to
    budget events, `?api_key=<key>` is passed on to the WebSocket."""
    return render(
        request,
        "llm/chat.html",
        {"default_context": DEFAULT_CONTEXT, "version": settings.RHETOR_VERSION},
    )
