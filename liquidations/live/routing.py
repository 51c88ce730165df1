from __future__ import annotations

from typing import Any

from django.urls import path

from . import consumers

# Channels routes ASGI apps through Django's path(); django-stubs types it for views only.
feed: Any = consumers.LiquidationFeedConsumer.as_asgi()

websocket_urlpatterns = [
    path("ws/liquidations/", feed),
    path("ws/liquidations/<str:symbol>/", feed),
]
