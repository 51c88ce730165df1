from django.urls import path

from . import views

app_name = "liquidations"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("symbols/search/", views.symbol_picker, name="symbol_search"),
    # Keep last: one path segment is a symbol (/history/ and other pages come before it).
    path("<str:symbol>/", views.symbol_dashboard, name="symbol"),
]
