"""Browser fixtures: headless Chromium (the Debian package) driven by Playwright for Python.

    @pytest.mark.browser
    def test_something(admin_page, live_server, screenshot):
        admin_page.goto(live_server.url + "/admin/")
        expect(admin_page.locator("h1")).to_have_text("...")
        screenshot(admin_page, "something")

- `browser`: a Chromium started from /usr/bin/chromium (never a downloaded browser: the
  Playwright wheel only brings its driver) with a fresh user-data dir, one per test.
  When /usr/bin/chromium (or the playwright package) is missing the test skips with a
  reason; under RHETOR_REQUIRE_INTEGRATION=1 (what `.ci/run` sets) it fails instead.
- `page`: a new page of `browser`, against pytest-django's `live_server`.
- `admin_page`: `page`, logged in to /admin/ as pytest-django's `admin_user`
  (username "admin", password "password").
- `screenshot(page, name)`: saves `<output>/browser/<name>.png` and returns the path;
  `<output>` is $RHETOR_TEST_OUTPUT_DIR, default `test-output/` at the repo root (gitignored).
- `outside_browser_loop()`: a context manager for ORM calls made while the browser runs.
  Playwright's sync API keeps its asyncio loop marked as running on the test's thread, so
  Django refuses sync ORM calls there (SynchronousOnlyOperation). Seed data in fixtures
  listed *before* `browser`/`page`/`admin_page`, or wrap later ORM calls:

        with outside_browser_loop():
            assert UsageRecord.objects.count() == 3

Tests are transactional (the live server runs in another thread) with serialized_rollback,
so the rows seeded by migrations (default prompts, prices) survive for the tests after them.
"""

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType

from tests.conftest import skip_or_fail

CHROMIUM = os.environ.get("RHETOR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "password"  # pytest-django's admin_user
REPO_ROOT = Path(__file__).resolve().parents[2]


def output_dir() -> Path:
    base = Path(os.environ.get("RHETOR_TEST_OUTPUT_DIR") or REPO_ROOT / "test-output")
    path = base / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every browser test is transactional with serialized_rollback (see the docstring)."""
    for item in items:
        if item.get_closest_marker("browser") and not item.get_closest_marker("django_db"):
            item.add_marker(pytest.mark.django_db(transaction=True, serialized_rollback=True))


@contextmanager
def outside_browser_loop() -> Iterator[None]:
    """Lets the test's thread use the sync ORM while Playwright's loop is suspended."""
    loop = asyncio._get_running_loop()
    asyncio._set_running_loop(None)
    try:
        yield
    finally:
        asyncio._set_running_loop(loop)


@pytest.fixture
def browser() -> Iterator[Any]:
    # A transactional test before this one flushed the tables and recreated the content
    # types under new ids: the process-wide cache would give the admin's LogEntry (written
    # by the live server on every add/change) an id that no longer exists.
    ContentType.objects.clear_cache()
    if not os.path.exists(CHROMIUM):
        skip_or_fail(f"needs Chromium at {CHROMIUM} (apt-get install -y chromium chromium-driver)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("needs the playwright package (pip install -r requirements-dev.txt)")
    user_data_dir = tempfile.mkdtemp(prefix="rhetor-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                user_data_dir,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 900},
            )
            context.set_default_timeout(15_000)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(user_data_dir, ignore_errors=True)


@pytest.fixture
def page(browser: Any, live_server: Any) -> Any:
    return browser.pages[0] if browser.pages else browser.new_page()


@pytest.fixture
def admin_page(admin_user: Any, page: Any, live_server: Any) -> Any:
    log_in(page, live_server.url)
    return page


def log_in(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", ADMIN_USERNAME)
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")


@pytest.fixture
def screenshot() -> Callable[[Any, str], Path]:
    def save(page: Any, name: str) -> Path:
        path = output_dir() / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
