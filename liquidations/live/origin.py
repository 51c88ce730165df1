"""Browser sockets only from the site's own pages: the Origin must match scheme, host and port.

Channels' AllowedHostsOriginValidator compares the Origin's host name with ALLOWED_HOSTS
and ignores the scheme and the port, so any page served from another port of an allowed
host (http://127.0.0.1:1 for an app on :18080) could open the live feed. Here the Origin
must equal the socket request's own origin (its Host header, which must be allowed, and
its scheme), or be one of DJANGO_CSRF_TRUSTED_ORIGINS.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]


def parse_origin(value: str) -> Origin | None:
    """Return (scheme, host, port) of an http(s) origin, the port made explicit."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def request_scheme(scope: dict[str, Any]) -> str:
    """Return "https" or "http" for the page that opened this socket.

    Behind a TLS proxy (SECURE_PROXY_SSL_HEADER, set by DJANGO_HTTPS) the proxy's header
    says so, as it does for Django's request.is_secure().
    """
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name, secure_value = proxy_header
        header = name.removeprefix("HTTP_").replace("_", "-").lower().encode()
        forwarded = _header(scope, header)
        if forwarded is not None:
            return "https" if forwarded.split(",")[0].strip() == secure_value else "http"
    return "https" if scope.get("scheme") in ("wss", "https") else "http"


def own_origin(scope: dict[str, Any]) -> Origin | None:
    """Return the socket request's own origin, if its Host header is an allowed host."""
    host = _header(scope, b"host")
    if not host:
        return None
    domain, port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    if port and not port.isdigit():
        return None
    scheme = request_scheme(scope)
    return scheme, domain.strip("[]"), int(port) if port else DEFAULT_PORTS[scheme]


def trusted(origin: Origin) -> bool:
    """Whether origin is one of CSRF_TRUSTED_ORIGINS ("https://*.example.com" allowed)."""
    for entry in settings.CSRF_TRUSTED_ORIGINS:
        scheme, _, rest = entry.partition("://")
        wildcard = rest.startswith("*.")
        parsed = parse_origin(f"{scheme}://{rest[2:] if wildcard else rest}")
        if parsed is None or (parsed[0], parsed[2]) != (origin[0], origin[2]):
            continue
        if origin[1].endswith("." + parsed[1]) if wildcard else origin[1] == parsed[1]:
            return True
    return False


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether a socket request comes from this site's own pages (or a trusted origin)."""
    own = own_origin(scope)
    raw = _header(scope, b"origin")
    origin = parse_origin(raw) if raw else None
    if own is None or origin is None:
        return False
    return origin == own or trusted(origin)


class SameOriginValidator:
    """ASGI middleware refusing WebSocket handshakes from any other origin (HTTP 403)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
