from django.urls import path

from . import views

app_name = "liquidations"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
]
