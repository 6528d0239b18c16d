"""`manage.py check --deploy` passes with the production environment of the README."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "rhetor_site.settings",
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "kX9v$2mQp!7zR#4tLw8yN@3cF6hJ0bD5gS1aE-uI_oP+eT9rY2wQ",
    "DJANGO_ALLOWED_HOSTS": "rhetor.example.com",
    "RHETOR_HOST": "0.0.0.0",  # noqa: S104
    "RHETOR_REQUIRE_AUTH": "",
    "RHETOR_SECURE_HTTPS": "true",
    "RHETOR_SECURE_PROXY_SSL_HEADER": "true",
    "RHETOR_CORS_ORIGINS": "https://tekton.example.com",
}


def deploy_check(tmp_path: Path, extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "RHETOR_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}", **extra})
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_production_environment_passes_check_deploy_without_warnings(tmp_path: Path) -> None:
    result = deploy_check(tmp_path, PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize(
    ("_case", "change", "warning"),
    [
        ("development secret key", {"DJANGO_SECRET_KEY": ""}, "security.W009"),
        ("no https", {"RHETOR_SECURE_HTTPS": "false"}, "security.W004"),
        ("debug", {"DJANGO_DEBUG": "true"}, "security.W018"),
        ("anonymous access", {"RHETOR_HOST": "127.0.0.1"}, "access.W001"),
    ],
)
def test_check_deploy_warns_when_production_settings_are_missing(
    tmp_path: Path, _case: str, change: dict[str, str], warning: str
) -> None:
    result = deploy_check(tmp_path, {**PRODUCTION, **change})

    assert result.returncode != 0
    assert warning in result.stdout + result.stderr
