from django.db import migrations
from django.db.models import OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce

# (provider, model, context window in tokens): the known models at the time of writing.
# Operators edit these in the admin; the code never hard-codes a window.
MODEL_WINDOWS = [
    ("anthropic", "claude-3-opus-20240229", 200000),
    ("anthropic", "claude-3-sonnet-20240229", 200000),
    ("anthropic", "claude-3-haiku-20240307", 200000),
    ("anthropic", "claude-3-5-sonnet-20240620", 200000),
    ("openai", "gpt-4", 8192),
    ("openai", "gpt-4-turbo", 128000),
    ("openai", "gpt-4o", 128000),
    ("openai", "gpt-3.5-turbo", 16385),
    ("ollama", "llama3", 8192),
    ("ollama", "mistral", 32768),
    ("ollama", "codellama", 16384),
    ("simulated", "simulated-standard", 8192),
    ("simulated", "simulated-fast", 8192),
]


def seed(apps, schema_editor):
    ModelContextWindow = apps.get_model("contexts", "ModelContextWindow")
    for provider, model, window in MODEL_WINDOWS:
        ModelContextWindow.objects.get_or_create(
            provider=provider, model=model, defaults={"context_window": window}
        )


def unseed(apps, schema_editor):
    ModelContextWindow = apps.get_model("contexts", "ModelContextWindow")
    for provider, model, _ in MODEL_WINDOWS:
        ModelContextWindow.objects.filter(provider=provider, model=model).delete()


def backfill_counters(apps, schema_editor):
    Context = apps.get_model("contexts", "Context")
    Message = apps.get_model("contexts", "Message")
    active_tokens = (
        Message.objects.filter(context=OuterRef("pk"), archived=False)
        .values("context")
        .annotate(total=Sum("tokens"))
        .values("total")
    )
    archived = (
        Message.objects.filter(context=OuterRef("pk"), archived=True)
        .values("context")
        .annotate(total=Sum(1))
        .values("total")
    )
    Context.objects.update(
        token_count=Coalesce(Subquery(active_tokens), 0),
        archived_message_count=Coalesce(Subquery(archived), 0),
    )


class Migration(migrations.Migration):
    dependencies = [("contexts", "0002_windows_summaries_outbox")]

    operations = [
        migrations.RunPython(seed, unseed),
        migrations.RunPython(backfill_counters, migrations.RunPython.noop),
    ]
