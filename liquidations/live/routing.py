from __future__ import annotations

from django.urls import path

from . import consumers, market_consumer

websocket_urlpatterns = [
    path("ws/liquidations/", consumers.LiquidationFeedConsumer.as_asgi()),
    path("ws/liquidations/<str:symbol>/", consumers.LiquidationFeedConsumer.as_asgi()),
    path("ws/market/<str:symbol>/", market_consumer.MarketConsumer.as_asgi()),
]
