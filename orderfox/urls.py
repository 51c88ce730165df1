from django.contrib import admin
from django.urls import include, path

from liquidations.web.health import health

# A database outage outside a view still answers 503 (liquidations/web/errors.py).
handler500 = "liquidations.web.errors.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", health, name="health"),
    path("api/v1/", include("liquidations.web.api_urls")),
    path("", include("liquidations.web.urls")),
]
