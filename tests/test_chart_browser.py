"""The symbol page's volume chart and stats strip in a real browser, fed live."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest

from tests.conftest import OUTPUT, WAIT_MS

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

CANVAS = "#volume-chart .volume-chart-canvas"


def _orders(url: str) -> list[dict]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


async def _stored(live_app, symbol: str, count: int) -> None:
    url = f"{live_app.url}api/v1/liquidation-orders?symbol={symbol}&limit=1000"
    async with asyncio.timeout(WAIT_MS / 1000):
        while True:
            try:
                if len(await asyncio.to_thread(_orders, url)) >= count:
                    return
            except OSError:
                pass  # 404 until the first one is stored
            await asyncio.sleep(0.1)


async def test_chart_renders_and_grows_when_a_liquidation_arrives(live_app, browser):  # noqa: F811
    exchange = live_app.exchange
    await exchange.wait_for_clients(1, timeout=20)
    await exchange.broadcast(exchange.synthetic_event(symbol="BTCUSDT"))
    await _stored(live_app, "BTCUSDT", 1)

    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{live_app.url}BTCUSDT/")
    await page.wait_for_function(
        "s => document.querySelector(s).dataset.state === 'ready'", arg=CANVAS, timeout=WAIT_MS
    )
    # lightweight-charts drew into canvases, and the stored liquidation is in a bar.
    assert await page.locator(f"{CANVAS} canvas").count() > 0
    assert int(await page.get_attribute(CANVAS, "data-bars")) >= 1
    before = float(await page.get_attribute(CANVAS, "data-total"))
    assert before > 0
    assert await page.locator("#liquidation-stats[data-scope='BTCUSDT']").count() == 1
    await page.wait_for_function(
        "() => document.querySelector('.connection-status').textContent === 'Connected'",
        timeout=WAIT_MS,
    )
    # The user zooms into older bars; a live update must not move the view.
    view = {"from": 10, "to": 60}
    await page.evaluate(
        "v => document.getElementById('volume-chart').chart.timeScale().setVisibleLogicalRange(v)",
        view,
    )
    bars_before = int(await page.get_attribute(CANVAS, "data-bars"))

    event = exchange.synthetic_event(symbol="BTCUSDT")
    usd = float(event["o"]["z"]) * float(event["o"]["ap"])
    await exchange.broadcast(event)
    await page.wait_for_function(
        "([s, total]) => parseFloat(document.querySelector(s).dataset.total) > total",
        arg=[CANVAS, before],
        timeout=WAIT_MS,
    )
    after = float(await page.get_attribute(CANVAS, "data-total"))
    assert after == pytest.approx(before + usd, abs=0.02)  # the API's cents
    kept = await page.evaluate(
        "() => document.getElementById('volume-chart').chart.timeScale().getVisibleLogicalRange()"
    )
    assert (kept["from"], kept["to"]) == (view["from"], view["to"])
    assert int(await page.get_attribute(CANVAS, "data-bars")) >= bars_before
    # The stats strip was pushed live too: its 1h count now includes both.
    await page.wait_for_function(
        """() => {
             const dd = document.querySelector(
               "#liquidation-stats [data-window='1h'] .stat-count dd");
             return dd && parseInt(dd.textContent) >= 2;
           }""",
        timeout=WAIT_MS,
    )
    await page.click("#volume-chart button[data-timeframe='1m']")
    await page.wait_for_function(
        "s => document.querySelector(s).dataset.state === 'ready' && "
        "parseFloat(document.querySelector(s).dataset.total) > 0",
        arg=CANVAS,
        timeout=WAIT_MS,
    )
    OUTPUT.mkdir(exist_ok=True)
    await page.screenshot(path=OUTPUT / "symbol-chart.png")

    # History, linked from the header, and its CSV streamed by daphne (ASGI).
    await page.click(".site-nav a:has-text('History')")
    await page.fill("input[name=symbol]", "btcusdt")
    await page.click(".history-filters button[type=submit]")
    await page.wait_for_url("**/history/?symbol=btcusdt*", timeout=WAIT_MS)
    assert await page.locator("#history-rows tr.liq-row").count() == 2
    await page.screenshot(path=OUTPUT / "history.png")
    csv_url = await page.get_attribute("a.csv-download", "href")
    text = await asyncio.to_thread(_text, live_app.url.rstrip("/") + csv_url)
    lines = text.strip().splitlines()
    assert lines[0].startswith("id,trade_time,trade_time_ms,symbol,side")
    assert len(lines) == 3 and all(",BTCUSDT," in line for line in lines[1:])
    assert errors == []


def _text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        return response.read().decode()
