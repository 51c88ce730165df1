"""Close codes through a real daphne socket: what a refused client sees, and the log stays quiet.

The ASGI communicator does not go through autobahn, which refuses application close codes
outside 1000 and 3000-4999 (1008 and 1009 became 1011 plus an ERROR traceback).
"""

from __future__ import annotations

import asyncio

import pytest
import websockets

from liquidations.live import contracts
from tests.conftest import REPO, LiveApp

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

GOOD = '{"min_usd": "0", "side": "all"}'


@pytest.fixture(scope="module")
def daphne_app(tmp_path_factory):
    """`serve_web` with one daphne process (no worker), embedded settings, its own data."""
    app = LiveApp(
        data_dir=tmp_path_factory.mktemp("daphne"),
        ws_base_url="ws://127.0.0.1:9/market",  # never used: serve_web runs no worker
        rest_base_url="http://127.0.0.1:9",
        server_args=[str(REPO / "manage.py"), "serve_web", "--processes", "1", "--port", "{port}"],
    )
    app.start()
    try:
        yield app
    finally:
        app.stop()


async def _close_code(app: LiveApp, path: str, *messages: str | bytes) -> int:
    url = f"ws://127.0.0.1:{app.port}{path}"
    origin = f"http://127.0.0.1:{app.port}"
    async with websockets.connect(url, origin=origin, max_size=None) as ws:  # type: ignore[arg-type]
        for message in messages:
            await ws.send(message)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None, "the server sent no close frame"
    return closed.value.rcvd.code


@pytest.mark.parametrize(
    ("messages", "code"),
    [
        (["x" * 1_000_000], contracts.CLOSE_TOO_BIG),
        ([GOOD + " " * 300], contracts.CLOSE_TOO_BIG),
        ([GOOD.encode()], contracts.CLOSE_POLICY),
        (["{not json"], contracts.CLOSE_POLICY),
        (['{"min_usd": "0", "side": "all", "since": -1}'], contracts.CLOSE_POLICY),
        ([GOOD] * 11, contracts.CLOSE_POLICY),
    ],
    ids=["1MB", "too-long", "binary", "not-json", "bad-since", "flood"],
)
async def test_refusals_reach_the_client_with_their_own_code(daphne_app, messages, code):
    assert 4000 <= code <= 4999
    assert await _close_code(daphne_app, "/ws/liquidations/", *messages) == code


async def test_an_unknown_feed_closes_with_not_found(daphne_app):
    code = await _close_code(daphne_app, "/ws/liquidations/BTC%20USDT/")
    assert code == contracts.CLOSE_NOT_FOUND


async def test_an_unknown_market_symbol_closes_with_not_found(daphne_app):
    """The symbol page's market socket follows the same convention (market.js stops)."""
    code = await _close_code(daphne_app, "/ws/market/NOSUCHUSDT/")
    assert code == contracts.CLOSE_NOT_FOUND


async def test_refusals_leave_no_traceback_in_the_log(daphne_app):
    await _close_code(daphne_app, "/ws/liquidations/", "{not json")
    await asyncio.sleep(0.5)
    log = daphne_app.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
