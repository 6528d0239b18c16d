"""The clients' API key against a live Rhetor that requires one (RHETOR_REQUIRE_AUTH):
sent as `Authorization: Bearer`, refused without, scopes reported as Forbidden."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rhetor.client import Forbidden, RhetorPromptClient, Unauthorized
from tests.servers import ROOT, serve, stop_server


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    directory = tmp_path_factory.mktemp("secured-server")
    url, process = serve(directory, {"RHETOR_REQUIRE_AUTH": "true"})
    yield url, directory
    stop_server(process)


def create_key(directory: Path, scopes: str) -> str:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "rhetor_site.settings",
        "DATABASE_URL": f"sqlite:///{directory / 'rhetor.sqlite3'}",
    }
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "create_api_key",
            "--name",
            "client-test",
            "--scopes",
            scopes,
        ],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.strip().splitlines()[-1]


async def test_a_key_from_the_environment_is_accepted(
    secured: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, directory = secured
    monkeypatch.setenv("RHETOR_API_KEY", create_key(directory, "prompts:read"))

    async with RhetorPromptClient(url) as client:
        prompts = await client.list_prompts(component="ergon")

    assert [p["prompt_id"] for p in prompts] == ["ergon_default"]


async def test_without_a_key_the_client_raises_unauthorized(
    secured: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RHETOR_API_KEY", raising=False)

    async with RhetorPromptClient(secured[0]) as client:
        with pytest.raises(Unauthorized) as caught:
            await client.list_prompts()

    assert caught.value.status == 401
    assert caught.value.code == "unauthorized"


async def test_a_key_without_the_scope_raises_forbidden(secured: tuple[str, Path]) -> None:
    url, directory = secured
    key = create_key(directory, "prompts:read")

    async with RhetorPromptClient(url, api_key=key) as client:
        with pytest.raises(Forbidden) as caught:
            await client.create_personality(name="Not allowed", traits=["x"])

    assert caught.value.status == 403
    assert caught.value.code == "forbidden"
