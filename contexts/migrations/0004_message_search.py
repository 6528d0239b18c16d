"""Full-text search over message content, by vendor (see contexts/search.py)."""

from django.db import migrations

from contexts.search import (
    POSTGRES_FTS,
    POSTGRES_FTS_DROP,
    SQLITE_FTS_DROP,
    SQLITE_FTS_REBUILD,
    SQLITE_FTS_TABLE,
    SQLITE_FTS_TRIGGERS,
)


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        for statement in [SQLITE_FTS_TABLE, *SQLITE_FTS_TRIGGERS, SQLITE_FTS_REBUILD]:
            schema_editor.execute(statement)
    elif vendor == "postgresql":
        for statement in POSTGRES_FTS:
            schema_editor.execute(statement)


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        for statement in SQLITE_FTS_DROP:
            schema_editor.execute(statement)
    elif vendor == "postgresql":
        for statement in POSTGRES_FTS_DROP:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("contexts", "0003_seed_model_windows")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
