"""The JSON API, mounted at /api/v1/ by orderfox/urls.py."""

from django.urls import path

from . import api, api_range

app_name = "api"

urlpatterns = [
    path(
        "liquidation-volume/<str:symbol>/<str:timeframe>",
        api.liquidation_volume,
        name="liquidation_volume",
    ),
    path("liquidation-orders", api.liquidation_orders, name="liquidation_orders"),
    path("liquidations", api_range.liquidations, name="liquidations"),
    path("liquidations/paged", api_range.liquidations_paged, name="liquidations_paged"),
]
