from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from .selectors import liquidation_list, liquidation_rows

PAGE_ROWS = 50


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    rows = liquidation_rows(liquidations=liquidation_list()[:PAGE_ROWS])
    return render(request, "liquidations/index.html", {"rows": rows})
