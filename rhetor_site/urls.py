from django.contrib import admin
from django.urls import URLPattern, URLResolver, path

from llm.ui import chat_page
from rhetor_site.api import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/", admin.site.urls),
    path("ui/", chat_page, name="chat"),
    path("", api.urls),
]
