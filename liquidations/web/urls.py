from django.urls import path

from . import history, views

app_name = "liquidations"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("history/", history.history, name="history"),
    path("history/csv", history.history_csv, name="history_csv"),
    path("symbols/search/", views.symbol_picker, name="symbol_search"),
    # Keep last: one path segment is a symbol (/history/ and other pages come before it).
    path("<str:symbol>/", views.symbol_dashboard, name="symbol"),
]
