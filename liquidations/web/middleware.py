"""Request guards: input the views must never see, the CSP header, database outages.

Each runs plain functions before and after the view, in the request's own mode (sync or
async): Django's MiddlewareMixin would hop to the shared sync thread on every request.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render

from .errors import database_unavailable, unavailable_response

# C0 controls (NUL included), DEL and C1 controls: never part of a symbol, a number, a
# cursor or a search. PostgreSQL refuses NUL in text outright (a 500 before this check).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
API_PREFIX = "/api/"

GetResponse = Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]


class RequestGuard:
    """Middleware base: before() may answer instead of the view; after() sees the answer."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        return None

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        return response

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        early = self.before(request)
        if early is not None:
            return early
        response = self.get_response(request)
        assert isinstance(response, HttpResponseBase)
        return self.after(request, response)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        early = self.before(request)
        if early is not None:
            return early
        response = self.get_response(request)
        assert not isinstance(response, HttpResponseBase)
        return self.after(request, await response)


def is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


# -- bad input ---------------------------------------------------------------------------


def bad_parameter(request: HttpRequest) -> str | None:
    """Return the name of the first query parameter holding a control character, if any."""
    for name, values in request.GET.lists():
        if CONTROL_CHARACTERS.search(name) or any(CONTROL_CHARACTERS.search(v) for v in values):
            return CONTROL_CHARACTERS.sub("?", name)[:40]
    return None


class BadInputMiddleware(RequestGuard):
    """Answer 400 to query parameters with control characters, before any view reads them."""

    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        name = bad_parameter(request)
        if name is None:
            return None
        detail = f"The parameter {name!r} contains a control character."
        if is_api(request):
            return JsonResponse({"detail": detail}, status=400)
        return render(request, "400.html", {"detail": detail}, status=400)


# -- Content-Security-Policy -------------------------------------------------------------

CSP_HEADER = "Content-Security-Policy"
CSP_POLICY = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
)


def content_security_policy(request: HttpRequest) -> str:
    """Return the policy: scripts and styles from files of this site only (nothing
    inline), and connect-src naming the page's own WebSocket origin."""
    connect = "connect-src 'self'"
    try:
        host = request.get_host()
    except DisallowedHost:
        host = ""
    if host:
        # CSP 3 lets 'self' cover ws(s): on the same host; older browsers need it said.
        connect += f" {'wss' if request.is_secure() else 'ws'}://{host}"
    return "; ".join((*CSP_POLICY, connect))


class ContentSecurityPolicyMiddleware(RequestGuard):
    """Add the Content-Security-Policy header to every response that has none."""

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if CSP_HEADER not in response:
            response[CSP_HEADER] = content_security_policy(request)
        return response


# -- database outage ---------------------------------------------------------------------


class DatabaseOutageMiddleware(RequestGuard):
    """Answer 503 (a page, or JSON under /api/) when a view finds the database away.

    Outside views (another middleware's database call) errors.server_error does the same.
    """

    def process_exception(
        self, request: HttpRequest, exception: Exception
    ) -> HttpResponseBase | None:
        if database_unavailable(exception):
            return unavailable_response(request)
        return None
