"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against
`manage.py serve` fed by the fake exchange on loopback."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import (
    OUTPUT,
    ROWS,
    WAIT_MS,
    LiveApp,
    expect_status,
    feeding,
    feeding_venues,
    row_ids,
    settled_rows,
    wait_for_new_rows,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


async def test_rows_stream_in_capped_filtered_and_survive_a_restart(browser, live_app):
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await live_app.exchange.wait_for_clients(1, timeout=20)
    await page.goto(live_app.url)
    await expect_status(page, "Connected")
    assert "Waiting for liquidations…" in await page.inner_text("#liquidation-rows")

    async with feeding(live_app.exchange, rate=40):
        # Rows appear live, then the table stays at 50 while more arrive.
        await page.wait_for_selector(ROWS, timeout=WAIT_MS)
        await page.wait_for_function(
            "s => document.querySelectorAll(s).length === 50", arg=ROWS, timeout=WAIT_MS
        )
        newest = max(await row_ids(page))
        await wait_for_new_rows(page, newest, count=10)
        ids = await row_ids(page)
        assert len(ids) == 50
        assert len(set(ids)) == 50
        assert min(ids) > 10  # the oldest rows were trimmed
        assert await page.locator(".worker-status .worker-state").inner_text() == "streaming"
        await page.screenshot(path=OUTPUT / "dashboard-live.png")

        # A filter change re-renders over HTTP and narrows the socket too.
        await page.click(".filters a.chip:has-text('Shorts')")
        await page.wait_for_url("**/?side=short", timeout=WAIT_MS)
        cursor = int(await page.get_attribute("#feed", "data-cursor"))
        await wait_for_new_rows(page, cursor, count=3)
        sides = await page.eval_on_selector_all(ROWS, "rows => rows.map(r => r.dataset.side)")
        assert sides and set(sides) == {"BUY"}
        assert await page.inner_text(".connection-status") == "Connected"
        await page.screenshot(path=OUTPUT / "dashboard-shorts.png")

        # The server restarts: the page reconnects, keeps its filter and catches up.
        before = max(await row_ids(page))
        await asyncio.to_thread(live_app.restart)
        await expect_status(page, "Connected")
        await wait_for_new_rows(page, before, count=3)
        sides = await page.eval_on_selector_all(ROWS, "rows => rows.map(r => r.dataset.side)")
        assert set(sides) == {"BUY"}
        assert len(sides) <= 50
        await page.screenshot(path=OUTPUT / "dashboard-after-restart.png")
    # Feed stopped: the live table must now equal a fresh load of the same URL (no hole).
    expected = await settled_rows(live_app.url + "?side=short")
    await page.wait_for_function(
        """([selector, expected]) => JSON.stringify([...document.querySelectorAll(selector)]
               .map(r => +r.dataset.id).sort((a, b) => a - b)) === JSON.stringify(expected)""",
        arg=[ROWS, expected],
        timeout=WAIT_MS,
    )
    assert errors == []


async def test_a_late_catch_up_is_ordered_in_and_the_cap_trims_the_oldest(browser, live_app):
    """A catch-up frame (rows stored while the socket was away) can land after live rows
    newer than its own. Prepended as they come, those older rows sat above newer ones and
    the 50-row cap trimmed the newest: after a restart the table then differed from a
    fresh load, for good (the intermittent failure of the test above)."""
    page = await browser.new_page()
    await live_app.exchange.wait_for_clients(1, timeout=20)
    async with feeding(live_app.exchange, rate=40):
        await page.goto(live_app.url)
        await expect_status(page, "Connected")
        await page.wait_for_function(
            "s => document.querySelectorAll(s).length === 50", arg=ROWS, timeout=WAIT_MS
        )
    expected = await settled_rows(live_app.url)
    await page.wait_for_function(
        """([selector, expected]) => JSON.stringify([...document.querySelectorAll(selector)]
               .map(r => +r.dataset.id).sort((a, b) => a - b)) === JSON.stringify(expected)""",
        arg=[ROWS, expected],
        timeout=WAIT_MS,
    )
    # As a late catch-up would: four rows from the middle come again on top, unseen, and
    # with them one row older than the whole table (it must be trimmed, not kept).
    newest_first = await page.evaluate(
        """selector => {
            const body = document.getElementById("liquidation-rows");
            const rows = [...body.querySelectorAll(selector)];
            const late = rows.slice(20, 24);
            const oldest = rows[rows.length - 1].cloneNode(true);
            oldest.id = "liq-1"; oldest.dataset.id = "1";
            oldest.querySelector("time").setAttribute("datetime", "2000-01-01T00:00:00+00:00");
            for (const row of [oldest, ...late].reverse()) {
                row.removeAttribute("data-seen");
                body.prepend(row);
            }
            document.dispatchEvent(new CustomEvent("htmx:wsAfterMessage"));
            return [...body.querySelectorAll(selector)].map(r => +r.dataset.id);
        }""",
        ROWS,
    )
    assert newest_first == sorted(expected, reverse=True)


async def test_phone_layout_local_times_and_the_symbol_picker(browser, live_app):
    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, timezone_id="Asia/Tokyo"
    )
    page = await context.new_page()
    await live_app.exchange.wait_for_clients(1, timeout=20)
    async with feeding(live_app.exchange, rate=20):
        await page.goto(live_app.url)
        await page.wait_for_selector(ROWS, timeout=WAIT_MS)
        # Times show in the viewer's zone (UTC+9 here), the UTC timestamp on hover.
        # (One evaluation: rows keep arriving, so "the first row" changes between calls.)
        stamp, text, title = await page.eval_on_selector(
            f"{ROWS} time", "t => [t.getAttribute('datetime'), t.textContent, t.title]"
        )
        utc = datetime.fromisoformat(stamp).astimezone(UTC)
        assert text == (utc + timedelta(hours=9)).strftime("%H:%M:%S")
        assert title == utc.strftime("%Y-%m-%d %H:%M:%S.") + f"{utc.microsecond // 1000:03d} UTC"
        assert not await page.locator("th.col-time").is_visible()
        assert not await page.locator(f"{ROWS} td.col-time").first.is_visible()
        assert await page.locator(f"{ROWS} td.col-usd").first.is_visible()
        # Header items stack (one column) and the theme toggle switches to light.
        direction = await page.eval_on_selector(
            ".site-header", "e => getComputedStyle(e).flexDirection"
        )
        assert direction == "column"
        await page.click(".theme-toggle")
        assert await page.get_attribute("html", "data-theme") == "light"
        await page.screenshot(path=OUTPUT / "dashboard-phone-light.png")
        # The picker searches as one types and leads to the symbol's page and feed.
        await page.fill(".symbol-picker input", "eth")
        await page.click("#symbol-results a:has-text('ETHUSDT')", timeout=WAIT_MS)
        await page.wait_for_url("**/ETHUSDT/", timeout=WAIT_MS)
        await expect_status(page, "Connected")
        await page.wait_for_selector(ROWS, timeout=WAIT_MS)
        symbols = await page.eval_on_selector_all(ROWS, "rows => rows.map(r => r.dataset.symbol)")
        assert set(symbols) == {"ETHUSDT"}
    await context.close()


async def test_page_reconnects_after_a_server_side_close_the_extension_ignores(
    browser, tmp_path, fake_exchange
):
    """daphne's own websocket timeout closes sockets without a retryable code."""
    app = LiveApp(
        data_dir=tmp_path,
        ws_base_url=fake_exchange.ws_base_url,
        rest_base_url=fake_exchange.rest_base_url,
        server_args=[
            "-m", "daphne", "--bind", "127.0.0.1", "--port", "{port}",
            "--websocket_timeout", "1", "orderfox.asgi:application",
        ],
    )  # fmt: skip
    await asyncio.to_thread(app.start)
    try:
        page = await browser.new_page()
        await page.add_init_script(
            """window.__opens = 0; window.__closeCodes = [];
            document.addEventListener("htmx:wsOpen", () => window.__opens++);
            document.addEventListener(
                "htmx:wsClose", e => window.__closeCodes.push(e.detail.event.code));"""
        )
        await page.goto(app.url)
        await expect_status(page, "Connected")
        await page.wait_for_function("() => window.__opens >= 3", timeout=WAIT_MS)
        codes = await page.evaluate("window.__closeCodes")
        assert codes and not {1006, 1011, 1012, 1013} & set(codes)
        await expect_status(page, "Connected")
    finally:
        await asyncio.to_thread(app.stop)


@pytest.fixture
def three_venue_app(tmp_path, fake_exchange):
    app = LiveApp(
        data_dir=tmp_path,
        ws_base_url=fake_exchange.ws_base_url,
        rest_base_url=fake_exchange.rest_base_url,
        venues="binance,bybit,okx",
    )
    app.exchange = fake_exchange
    app.start()
    try:
        yield app
    finally:
        app.stop()


async def test_venue_column_and_venue_filter_on_a_live_page(browser, three_venue_app):
    app, exchange = three_venue_app, three_venue_app.exchange
    for venue in ("binance", "bybit", "okx"):
        await exchange.wait_for_clients(1, timeout=20, venue=venue)
    await exchange.wait_for_subscribed("bybit", timeout=20)
    await exchange.wait_for_subscribed("okx", timeout=20)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    sockets: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("websocket", lambda ws: sockets.append(ws.url))
    await page.goto(app.url)
    await expect_status(page, "Connected")
    venues_shown = "s => new Set([...document.querySelectorAll(s)].map(c => c.textContent)).size"
    async with feeding_venues(exchange, rate=30):
        await page.wait_for_function(
            f"s => ({venues_shown})(s) === 3", arg=f"{ROWS} td.col-venue", timeout=WAIT_MS
        )
        # The header's venue states arrive with the worker's next heartbeat (every second).
        states_js = "() => [...document.querySelectorAll('.venue-state')]"
        states_js += ".map(e => e.dataset.venue + ':' + e.dataset.state).join(' ')"
        await page.wait_for_function(
            f"() => ({states_js})() === 'binance:streaming bybit:streaming okx:streaming'",
            timeout=WAIT_MS,
        )
        await page.screenshot(path=OUTPUT / "dashboard-venues.png")

        # The venue filter: over HTTP for the table, on the same socket for what follows.
        await page.click(".venue-filter a.chip:has-text('Bybit')")
        await page.wait_for_url("**/?venue=bybit", timeout=WAIT_MS)
        cursor = int(await page.get_attribute("#feed", "data-cursor"))
        await wait_for_new_rows(page, cursor, count=3)
        shown = await page.eval_on_selector_all(ROWS, "rows => rows.map(r => r.dataset.venue)")
        assert shown and set(shown) == {"bybit"}
        labels = await page.eval_on_selector_all(
            f"{ROWS} td.col-venue", "cells => cells.map(c => c.textContent)"
        )
        assert set(labels) == {"Bybit"}
        assert len(sockets) == 1, "the filter change must not reconnect the socket"
        await page.screenshot(path=OUTPUT / "dashboard-venue-bybit.png")
    assert errors == []


async def test_a_refused_socket_says_disconnected_and_stays_closed(browser, live_app):
    """A message the server refuses closes the socket with a final 4000-range code: the
    page says so and does not retry (1008/1009 became 1011 under daphne, retried forever)."""
    page = await browser.new_page()
    sockets: list[object] = []
    page.on("websocket", lambda ws: sockets.append(ws))
    await page.goto(live_app.url)
    await expect_status(page, "Connected")
    # A ws-send form, as htmx's extension sends them: its JSON carries keys the feed refuses.
    await page.evaluate(
        """() => {
            const form = document.createElement("form");
            form.setAttribute("ws-send", "");
            form.innerHTML = '<input name="bogus" value="1">';
            document.getElementById("live").appendChild(form);
            htmx.process(form);
            form.requestSubmit();
        }"""
    )
    await expect_status(page, "Disconnected")
    await asyncio.sleep(3)  # longer than the first reconnect delays (0.25-1 s)
    assert await page.inner_text(".connection-status") == "Disconnected"
    assert len(sockets) == 1


async def test_every_page_runs_under_the_content_security_policy(browser, live_app):
    """No inline script or style is left to break under `default-src 'self'`: the live
    table and its venue chips, the symbol page's market panels, history and the admin."""
    await asyncio.to_thread(live_app.create_superuser, "root", "csp-test-only")
    page = await browser.new_page()
    await page.add_init_script(
        """window.__csp = [];
        document.addEventListener("securitypolicyviolation",
            e => window.__csp.push(e.violatedDirective + " " + e.blockedURI));"""
    )
    problems: list[str] = []
    page.on(
        "console",
        lambda m: problems.append(f"{page.url}: {m.text}") if "Policy" in m.text else None,
    )
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    await live_app.exchange.wait_for_clients(1, timeout=20)
    async with feeding(live_app.exchange, rate=20):
        await page.goto(live_app.url)
        header = (await page.request.get(live_app.url)).headers["content-security-policy"]
        assert "default-src 'self'" in header and "unsafe-inline" not in header
        await expect_status(page, "Connected")  # connect-src lets the page's own socket in
        await page.wait_for_selector(ROWS, timeout=WAIT_MS)
        await page.click(".venue-filter a.chip:has-text('Binance')")
        await page.wait_for_url("**/?venue=binance", timeout=WAIT_MS)
        await page.fill(".symbol-picker input", "btc")
        await page.click("#symbol-results a:has-text('BTCUSDT')", timeout=WAIT_MS)
        await page.wait_for_url("**/BTCUSDT/**", timeout=WAIT_MS)
        # The market panels: candles, the trades tape and the order book, live.
        await page.wait_for_selector(
            "#candle-chart .candle-chart-canvas[data-state='ready'] canvas", timeout=WAIT_MS
        )
        await page.wait_for_selector("#trade-rows tr.trade-row", timeout=WAIT_MS)
        level = "#order-book-levels[data-state='synced'] .book-level.bid"
        await page.wait_for_selector(level, timeout=WAIT_MS)
        # Each level's depth bar is drawn without a style attribute (market.js sets it).
        fill = await page.eval_on_selector(
            level, "e => [e.dataset.fill, e.style.getPropertyValue('--fill')]"
        )
        assert fill[1] == f"{fill[0]}%", fill
        await page.goto(live_app.url + "history/")
        await page.goto(live_app.url + "admin/login/?next=/admin/liquidations/liquidation/")
        await page.fill("#id_username", "root")
        await page.fill("#id_password", "csp-test-only")
        await page.click("input[type=submit]")
        await page.wait_for_url("**/admin/liquidations/liquidation/", timeout=WAIT_MS)
        await page.click("#result_list tbody tr a", timeout=WAIT_MS)
        await page.wait_for_load_state()
        problems += await page.evaluate("window.__csp")
    assert not problems, problems
