"""New ledger rows (reservations and usage records), one INSERT each."""

import functools
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Field, Model

from budget.models import BudgetReservation, UsageRecord

_Row = TypeVar("_Row", BudgetReservation, UsageRecord)


def row_insert(obj: _Row) -> _Row:
    """`obj.save()` of a new reservation or usage record, as one INSERT ... RETURNING id
    written once per model instead of compiled by the ORM on every request. Each field's
    value is prepared as the ORM prepares it (`pre_save`, `get_db_prep_save`), so the row
    is the one `save()` would write; neither model has save() overrides or signal
    receivers."""
    db = connections[DEFAULT_DB_ALIAS]  # looked up once; each `connection.x` looks again
    model = type(obj)
    fields = _insert_fields(model)
    params = [f.get_db_prep_save(f.pre_save(obj, True), db) for f in fields]
    with db.cursor() as cursor:
        cursor.execute(_insert_sql(model, db.vendor), params)
        obj.pk = cursor.fetchone()[0]
    obj._state.adding = False
    obj._state.db = db.alias
    return obj


@functools.cache
def _insert_fields(model: type[Model]) -> tuple[Field[Any, Any], ...]:
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key)


@functools.cache
def _insert_sql(model: type[Model], vendor: str) -> str:
    q = connection.ops.quote_name
    fields = _insert_fields(model)
    columns = ", ".join(q(str(f.column)) for f in fields)
    values = ", ".join(["%s"] * len(fields))
    # Quoted identifiers of our own models; every value is a parameter.
    return (
        f"INSERT INTO {q(model._meta.db_table)} ({columns}) VALUES ({values}) "  # noqa: S608
        f"RETURNING {q(str(model._meta.pk.column))}"
    )
