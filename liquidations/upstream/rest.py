"""One GET of a venue's REST listing, as decoded JSON, with one error type for failures."""

from __future__ import annotations

import aiohttp
import orjson

from .client import describe_error


class InstrumentsError(Exception):
    """A venue's instrument listing could not be fetched or used; the message says why."""


async def get_json(
    url: str,
    *,
    timeout: float,
    params: dict[str, str] | None = None,
    error: type[InstrumentsError] = InstrumentsError,
) -> object:
    """GET url (with params) and return the decoded JSON body; raise `error` on failure."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(
                url, params=params, headers={"Accept": "application/json"}
            ) as response:
                body = await response.read()
                if response.status != 200:
                    raise error(f"{url} answered HTTP {response.status}")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise error(f"{url} unreachable: {describe_error(exc)}") from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise error(f"{url} did not return JSON: {exc}") from None
