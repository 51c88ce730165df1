from django.urls import path

from . import analytics_views, views

app_name = "liquidations"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("history/", analytics_views.history, name="history"),
    path("history/csv", analytics_views.history_csv, name="history_csv"),
]
