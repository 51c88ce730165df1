"""Save the README's screenshots with live rows from the fake exchange (three venues):
docs/screenshot-phone.png, the dashboard on a phone (390 x 844 CSS px, drawn at 2x), and
with --desktop docs/screenshot.png, the BTCUSDT page with its market panels (1280 x 900).
Needs Chromium and Playwright, like the browser tests.

Usage: .venv/bin/python scripts/phone_screenshot.py [--desktop] [OUTPUT.png]
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from playwright.async_api import async_playwright  # noqa: E402

from liquidations.devtools.fake_exchange import FakeExchange  # noqa: E402
from tests.conftest import LiveApp  # noqa: E402
from tests.factories import wide_events  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


VENUES = ("binance", "bybit", "okx")


async def main(output: Path, *, desktop: bool) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        async with FakeExchange(seed=7) as exchange:
            app = LiveApp(
                data_dir=Path(data_dir),
                ws_base_url=exchange.ws_base_url,
                rest_base_url=exchange.rest_base_url,
                venues=",".join(VENUES),
            )
            await asyncio.to_thread(app.start)
            feed = None
            try:
                for venue in VENUES:
                    await exchange.wait_for_clients(1, timeout=20, venue=venue)
                for event in wide_events(exchange):
                    await exchange.broadcast(event)
                feed = asyncio.create_task(exchange.generate(rate=8, venues=VENUES))
                await asyncio.sleep(6)  # a stored minute of liquidations for the stats strip
                async with async_playwright() as playwright:
                    browser = await playwright.chromium.launch(
                        executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
                    )
                    if desktop:
                        await _desktop(browser, app.url, output)
                        await browser.close()
                        return
                    page = await browser.new_page(
                        viewport={"width": 390, "height": 844}, device_scale_factor=2
                    )
                    await page.goto(app.url)
                    await page.wait_for_selector("#liquidation-rows tr.liq-row")
                    await asyncio.sleep(4)  # rows arriving over the socket
                    # Start at the stats strip: it, the filters and the newest rows fit.
                    await page.evaluate(
                        "() => window.scrollTo(0, document.querySelector('.stats-slot')"
                        ".getBoundingClientRect().top + scrollY - 8)"
                    )
                    # Rows keep arriving: show them after their glow has faded.
                    await page.screenshot(path=output, animations="disabled")
                    await browser.close()
            finally:
                if feed:
                    feed.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await feed
                await asyncio.to_thread(app.stop)
    print(f"saved {output}")


async def _desktop(browser, url: str, output: Path) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(url + "BTCUSDT/")
    await page.wait_for_function(
        "() => document.querySelector('#candle-chart .candle-chart-canvas')"
        ".dataset.state === 'ready'",
        timeout=30_000,
    )
    await asyncio.sleep(5)  # trades, the book and rows arriving over the sockets
    await page.screenshot(path=output, animations="disabled")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--desktop"]
    wide = "--desktop" in sys.argv[1:]
    default = REPO / ("docs/screenshot.png" if wide else "docs/screenshot-phone.png")
    asyncio.run(main(Path(args[0]) if args else default, desktop=wide))
