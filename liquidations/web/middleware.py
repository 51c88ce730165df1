"""Request guards: answers for input the views must never see, and for a database outage."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

# C0 controls (NUL included), DEL and C1 controls: never part of a symbol, a number, a
# cursor or a search. PostgreSQL refuses NUL in text outright (a 500 before this check).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
API_PREFIX = "/api/"

Handler = Callable[[HttpRequest], HttpResponse]
AsyncHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


def bad_parameter(request: HttpRequest) -> str | None:
    """Return the name of the first query parameter holding a control character, if any."""
    for name, values in request.GET.lists():
        if CONTROL_CHARACTERS.search(name) or any(CONTROL_CHARACTERS.search(v) for v in values):
            return CONTROL_CHARACTERS.sub("?", name)[:40]
    return None


def is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


def bad_input_response(request: HttpRequest, name: str) -> HttpResponse:
    detail = f"The parameter {name!r} contains a control character."
    if is_api(request):
        return JsonResponse({"detail": detail}, status=400)
    return render(request, "400.html", {"detail": detail}, status=400)


class BadInputMiddleware:
    """Answer 400 to query parameters with control characters, before any view reads them."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Handler | AsyncHandler) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        name = bad_parameter(request)
        if name is not None:
            return bad_input_response(request, name)
        return self.get_response(request)  # type: ignore[return-value]

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        name = bad_parameter(request)
        if name is not None:
            return bad_input_response(request, name)
        return await self.get_response(request)  # type: ignore[misc]
