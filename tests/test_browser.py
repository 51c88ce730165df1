"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against
`manage.py serve` fed by the fake exchange on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, skip_or_fail

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = REPO / "test-output"
WAIT_MS = 20_000
ROWS = "#liquidation-rows tr.liq-row"


@pytest.fixture
async def browser():
    if not CHROMIUM.exists() and not shutil.which("chromium"):
        skip_or_fail("Chromium not found at /usr/bin/chromium (apt install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install -r requirements-dev.txt)")
    OUTPUT.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def feeding(exchange, rate: float):
    """Let the fake exchange publish synthetic liquidations while the block runs."""
    task = asyncio.create_task(exchange.generate(rate=rate))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def row_ids(page) -> list[int]:
    return await page.eval_on_selector_all(ROWS, "rows => rows.map(r => +r.dataset.id)")


async def wait_for_new_rows(page, after_id: int, count: int = 1) -> None:
    await page.wait_for_function(
        """([selector, after, count]) => [...document.querySelectorAll(selector)]
               .filter(r => +r.dataset.id > after).length >= count""",
        arg=[ROWS, after_id, count],
        timeout=WAIT_MS,
    )


async def expect_status(page, text: str) -> None:
    await page.wait_for_function(
        "text => document.querySelector('.connection-status').textContent === text",
        arg=text,
        timeout=WAIT_MS,
    )


async def test_rows_stream_in_capped_filtered_and_survive_a_restart(live_app, browser):
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
    assert errors == []


async def test_layout_is_one_column_without_time_on_a_phone(live_app, browser):
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await context.new_page()
    await live_app.exchange.wait_for_clients(1, timeout=20)
    async with feeding(live_app.exchange, rate=20):
        await page.goto(live_app.url)
        await page.wait_for_selector(ROWS, timeout=WAIT_MS)
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
    await context.close()
