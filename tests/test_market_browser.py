"""The symbol page's market panels in Debian's Chromium, against `manage.py serve` fed by the
fake exchange: candles over the volume pane, the live tape and the live order book."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.conftest import OUTPUT

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

WAIT_MS = 20_000
CANVAS = "#candle-chart .candle-chart-canvas"


async def _open(live_app, browser, *, width: int = 1400, height: int = 1000):
    await live_app.exchange.wait_for_clients(1, timeout=20)
    page = await browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    await page.goto(f"{live_app.url}BTCUSDT/")
    return page, errors, sockets


async def _data(page, selector: str) -> dict:
    return await page.evaluate(
        "s => Object.assign({}, document.querySelector(s).dataset)", selector
    )


async def test_candles_volume_tape_and_book_live_and_rounding_on_the_open_socket(live_app, browser):
    exchange = live_app.exchange
    page, errors, sockets = await _open(live_app, browser)
    await page.wait_for_function(
        "s => document.querySelector(s).dataset.state === 'ready'", arg=CANVAS, timeout=WAIT_MS
    )
    # The candles draw, and the volume pane has exactly their bars.
    chart = await _data(page, CANVAS)
    assert int(chart["candles"]) >= 200 and chart["panes"] == "2"
    assert (chart["candleFirst"], chart["candleLast"]) == (
        chart["volumeFirst"],
        chart["volumeLast"],
    )
    assert chart["bars"] == chart["candles"]
    assert await page.locator(f"{CANVAS} canvas").count() > 0
    assert await page.is_hidden("#candle-chart .chart-notice")

    # Trades arrive, newest first; the book is synced and updates.
    await page.wait_for_selector("#trade-rows tr.trade-row", timeout=WAIT_MS)
    await page.wait_for_selector(
        "#order-book-levels[data-state='synced'] .book-level.bid", timeout=WAIT_MS
    )
    first_event = (await _data(page, "#order-book-levels"))["eventMs"]
    await page.wait_for_function(
        "ms => document.getElementById('order-book-levels').dataset.eventMs !== ms",
        arg=first_event,
        timeout=WAIT_MS,
    )
    assert (await _data(page, "#trades-state"))["state"] == "live"
    assert (await _data(page, "#book-state"))["state"] == "synced"
    await page.wait_for_function(
        "() => document.getElementById('candles-state').dataset.state === 'live'", timeout=WAIT_MS
    )
    # The tick-size book shows the book's own best bid and ask, with the fake's tick.
    best_bid = await page.text_content(".book-bids .book-level:first-child span")
    assert Decimal(best_bid.replace(",", "")) % Decimal("0.1") == 0

    # A liquidation of the symbol passes through the tape, highlighted.
    await exchange.broadcast(exchange.synthetic_event(symbol="BTCUSDT"))
    await page.wait_for_selector("#trade-rows tr.trade-liquidation", timeout=WAIT_MS)
    # Its marker shows on the candles from a threshold of $0, not from $100M.
    await page.fill("#candle-chart input[name=marker_usd]", "0")
    await page.wait_for_function(
        "s => parseInt(document.querySelector(s).dataset.markersShown) >= 1",
        arg=CANVAS,
        timeout=WAIT_MS,
    )
    await page.fill("#candle-chart input[name=marker_usd]", "100000000")
    await page.wait_for_function(
        "s => document.querySelector(s).dataset.markersShown === '0'", arg=CANVAS, timeout=WAIT_MS
    )
    await page.fill("#candle-chart input[name=marker_usd]", "0")
    await page.screenshot(path=OUTPUT / "market-panels.png")

    # Rounding 10 (×100 the tick): aggregated on the open socket, no reload, no new socket.
    await page.evaluate("() => { window.notReloaded = true; }")
    sockets_before = list(sockets)
    await page.select_option("#order-book select[name=rounding]", "10")
    await page.wait_for_selector(
        "#order-book-levels[data-rounding='10'] .book-level.bid", timeout=WAIT_MS
    )
    prices = await page.eval_on_selector_all(
        "#order-book-levels .book-level span:first-child", "els => els.map(e => e.textContent)"
    )
    assert prices and all(Decimal(p.replace(",", "")) % 10 == 0 for p in prices)
    assert await page.evaluate("() => window.notReloaded === true")
    # The tape came again whole with the new settings; its liquidation is still one marker.
    assert (await _data(page, CANVAS))["markersShown"] == "1"
    assert sockets == sockets_before
    assert (await _data(page, "#market-panels"))["sockets"] == "1"
    await page.select_option("#order-book select[name=depth]", "10")
    await page.wait_for_selector("#order-book-levels[data-depth='10']", timeout=WAIT_MS)
    assert await page.locator("#order-book-levels .book-level.bid").count() <= 10
    await page.screenshot(path=OUTPUT / "market-panels-rounded.png")
    assert sockets == sockets_before

    # The fake saw one subscription per stream.
    for stream in ("btcusdt@aggTrade", "btcusdt@depth@100ms", "btcusdt@kline_5m"):
        assert exchange.market.subscribes(stream) == 1, stream
    assert errors == []


async def test_phone_layout_stacks_the_panels(live_app, browser):
    page, errors, _sockets = await _open(live_app, browser, width=390, height=844)
    await page.wait_for_selector(
        "#order-book-levels[data-state='synced'] .book-level", timeout=WAIT_MS
    )
    boxes = [
        await page.locator(f"#{panel}").bounding_box()
        for panel in ("candle-chart", "trades", "order-book")
    ]
    assert boxes[0]["y"] + boxes[0]["height"] <= boxes[1]["y"]
    assert boxes[1]["y"] + boxes[1]["height"] <= boxes[2]["y"]
    assert all(box["width"] <= 390 for box in boxes)
    await page.screenshot(path=OUTPUT / "market-phone.png", full_page=True)
    assert errors == []


async def test_without_candles_the_page_shows_the_volume_and_a_notice(live_app, browser):
    exchange = live_app.exchange
    exchange.market.klines_status = 503
    await exchange.wait_for_clients(1, timeout=20)
    await exchange.broadcast(exchange.synthetic_event(symbol="BTCUSDT"))
    page, errors, _sockets = await _open(live_app, browser)
    await page.wait_for_function(
        "s => document.querySelector(s).dataset.state === 'ready'", arg=CANVAS, timeout=WAIT_MS
    )
    notice = await page.text_content("#candle-chart .chart-notice")
    assert await page.is_visible("#candle-chart .chart-notice")
    assert "Candles are unavailable" in notice and "503" in notice
    chart = await _data(page, CANVAS)
    assert chart["candles"] == "0" and int(chart["bars"]) >= 200
    assert (await _data(page, "#candles-state"))["state"] == "unavailable"
    # The rest of the page works: the tape and the book come from the streams.
    await page.wait_for_selector("#order-book-levels[data-state='synced']", timeout=WAIT_MS)
    await page.screenshot(path=OUTPUT / "market-no-candles.png")
    assert errors == []
