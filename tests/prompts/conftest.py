import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from ninja.testing import TestClient

from prompts import services
from prompts.models import Prompt, Template
from rhetor_site.api import api


@pytest.fixture
def client_api() -> TestClient:
    return TestClient(api)


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_superuser(
        username="operator", email="operator@example.com", password="pw"
    )


@pytest.fixture
def operator_client(operator) -> Client:
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def greeting(db) -> Template:
    return services.template_create(
        name="Greeting",
        content="Hello {{ name }}, welcome to {{ place }}.",
        category=Template.Category.USER,
        description="Says hello",
        tags=["greet", "demo"],
        created_by="tests",
    )


@pytest.fixture
def reviewer(db) -> Prompt:
    return services.prompt_create(
        name="Code reviewer",
        component="ergon",
        task_type="code",
        content="You review {{ language }} code.",
        tags=["review"],
        created_by="tests",
    )
