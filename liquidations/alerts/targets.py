"""Refuse webhook targets on loopback, private or link-local addresses (SSRF guard).

Unless ALERT_ALLOW_PRIVATE_TARGETS is set, a webhook URL whose host is, or resolves to,
any address that is not globally routable is refused: when the rule is saved, and again
before every send (a name can be re-pointed after it was checked).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class TargetRefused(ValueError):
    """A webhook URL that may not be called (its message says why, without secrets)."""


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("the webhook URL must be an http:// or https:// URL with a host")
    return parts.hostname


def _check_addresses(host: str, addresses: list[str]) -> None:
    if not addresses:
        raise TargetRefused(f"the webhook host {host} does not resolve")
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global or ip.is_multicast:
            raise TargetRefused(
                f"the webhook host {host} resolves to a non-public address ({ip}); "
                "set ALERT_ALLOW_PRIVATE_TARGETS=1 to allow it"
            )


def _literal(host: str) -> list[str] | None:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        return None


def target_check(url: str) -> None:
    """Raise TargetRefused if the webhook URL may not be called (resolves the host)."""
    host = _host_of(url)
    if settings.ALERT_ALLOW_PRIVATE_TARGETS:
        return
    addresses = _literal(host)
    if addresses is None:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise TargetRefused(f"the webhook host {host} does not resolve ({exc})") from None
        addresses = [str(info[4][0]) for info in infos]
    _check_addresses(host, addresses)


async def target_check_async(url: str) -> None:
    """target_check in a thread (name resolution blocks)."""
    await asyncio.to_thread(target_check, url)
