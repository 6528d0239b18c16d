import pytest
from django.contrib.auth.models import User

from tests.browser.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, outside_browser_loop


@pytest.mark.browser
def test_operator_logs_in_and_sees_the_console(admin_user, page, live_server, screenshot):
    page.goto(f"{live_server.url}/admin/")
    assert "/admin/login/" in page.url

    page.fill("#id_username", ADMIN_USERNAME)
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")

    page.wait_for_url(f"{live_server.url}/admin/")
    assert page.locator("#user-tools").inner_text().upper().startswith("WELCOME, ADMIN")
    path = screenshot(page, "login")
    assert path.stat().st_size > 0


@pytest.mark.browser
def test_wrong_password_is_refused(admin_user, page, live_server):
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", ADMIN_USERNAME)
    page.fill("#id_password", "not-the-password")
    page.click("input[type=submit]")

    assert "/admin/login/" in page.url
    assert "correct username and password" in page.locator(".errornote").inner_text()
    with outside_browser_loop():
        assert User.objects.get(username=ADMIN_USERNAME).last_login is None
