"""Reads of conversations."""

from asgiref.sync import sync_to_async

from contexts.models import Message

# The most recent active messages loaded to build a request's history; windowing then
# keeps what fits the model.
HISTORY_LOAD_LIMIT = 500


def context_history_list(*, context_id: str, limit: int = HISTORY_LOAD_LIMIT) -> list[Message]:
    """The context's latest active (not archived) messages, oldest first. One query; an
    unknown context has no history."""
    recent = list(
        Message.objects.filter(context__context_id=context_id, archived=False)
        .order_by("-seq")
        .only("role", "content", "tokens", "seq")[:limit]
    )
    recent.reverse()
    return recent


acontext_history_list = sync_to_async(context_history_list)
