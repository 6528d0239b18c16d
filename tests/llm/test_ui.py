"""The chat page's HTTP side: served at /ui/, self-contained (no external scripts)."""

import re

from django.test import Client


def test_chat_page_is_served_and_loads_nothing_from_elsewhere() -> None:
    response = Client().get("/ui/?context=ergon:x")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert 'value="hephaestus:chat"' in html
    assert '"/ws"' in html
    assert not re.search(r"<(script|link)[^>]+(src|href)=", html)


def test_chat_page_answers_only_get() -> None:
    assert Client().post("/ui/").status_code == 405
