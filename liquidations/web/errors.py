"""Error answers: 503 while the database is unavailable, the site's own 500 otherwise.

Pages get templates/503.html (the record is unavailable; the live feed may still run),
the JSON API gets {"detail": ...}. Neither touches the database.
"""

from __future__ import annotations

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import defaults

API_PREFIX = "/api/"
# Seconds a client should wait before retrying (the worker probes every 2 s).
RETRY_AFTER_SECONDS = 10
UNAVAILABLE_DETAIL = "The record is unavailable: the database cannot be reached. Try again shortly."


def database_unavailable(exc: BaseException | None) -> bool:
    """Whether exc means the database is away (down, restarting, pool timed out)."""
    return isinstance(exc, OperationalError | InterfaceError)


def unavailable_response(request: HttpRequest) -> HttpResponse:
    """Return the 503 answer: JSON under /api/, the site's page elsewhere."""
    if request.path_info.startswith(API_PREFIX):
        response: HttpResponse = JsonResponse({"detail": UNAVAILABLE_DETAIL}, status=503)
    else:
        response = render(request, "503.html", status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a database outage raised outside a view still answers 503."""
    if database_unavailable(sys.exc_info()[1]):
        return unavailable_response(request)
    if request.path_info.startswith(API_PREFIX):
        return JsonResponse({"detail": "Internal server error."}, status=500)
    return defaults.server_error(request)
