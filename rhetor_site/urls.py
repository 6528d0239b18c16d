from django.contrib import admin
from django.urls import URLPattern, URLResolver, path

from rhetor_site.api import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/", admin.site.urls),
    path("", api.urls),
]
