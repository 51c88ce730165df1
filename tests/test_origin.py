"""WebSocket origins: only the site's own pages (scheme, host and port) or trusted origins."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator

from orderfox.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def _opens(origin: str | None, host: str | None = "127.0.0.1:18080", **extra) -> bool:
    headers = [(b"origin", origin.encode())] if origin is not None else []
    if host is not None:
        headers.append((b"host", host.encode()))
    headers += [(name.encode(), value.encode()) for name, value in extra.items()]
    communicator = WebsocketCommunicator(application, "/ws/liquidations/", headers=headers)
    connected, _ = await communicator.connect()
    await communicator.disconnect()
    return connected


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1:18080", "127.0.0.1:18080"),
        ("http://localhost", "localhost"),
        ("http://localhost:80", "localhost"),
        ("http://LOCALHOST:8000", "localhost:8000"),
        ("http://[::1]:8000", "[::1]:8000"),
    ],
)
async def test_the_pages_own_origin_is_accepted(origin, host):
    assert await _opens(origin, host)


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1:1", "127.0.0.1:18080"),  # another port of the same host
        ("https://127.0.0.1:18080", "127.0.0.1:18080"),  # another scheme
        ("http://localhost:18080", "127.0.0.1:18080"),  # another host name
        ("http://evil.example:18080", "evil.example:18080"),  # a host not allowed
        ("https://evil.example", "127.0.0.1:18080"),
        ("null", "127.0.0.1:18080"),
        ("http://127.0.0.1:18080", None),  # no Host header
        (None, "127.0.0.1:18080"),  # no Origin header
    ],
)
async def test_any_other_origin_is_refused(origin, host):
    assert not await _opens(origin, host)


async def test_trusted_origins_are_accepted(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://liq.example.com", "https://*.example.org"]
    assert await _opens("https://liq.example.com")
    assert await _opens("https://feed.example.org")
    assert not await _opens("http://liq.example.com")
    assert not await _opens("https://liq.example.com:8443")
    assert not await _opens("https://example.org.evil.net")


async def test_behind_a_tls_proxy_the_forwarded_scheme_counts(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert await _opens("https://localhost", "localhost", **{"x-forwarded-proto": "https"})
    assert not await _opens("http://localhost", "localhost", **{"x-forwarded-proto": "https"})
    assert await _opens("http://localhost", "localhost")
