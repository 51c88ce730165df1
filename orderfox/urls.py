from django.contrib import admin
from django.urls import include, path

from liquidations.analytics_views import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", health, name="health"),
    path("api/v1/", include("liquidations.api_urls")),
    path("", include("liquidations.urls")),
]
