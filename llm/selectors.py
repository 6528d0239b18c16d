"""Reads of the llm app."""

from asgiref.sync import sync_to_async

from llm.models import DefaultModel


def default_model_get() -> DefaultModel | None:
    return DefaultModel.objects.filter(pk=DefaultModel.SINGLETON_ID).first()


adefault_model_get = sync_to_async(default_model_get)
