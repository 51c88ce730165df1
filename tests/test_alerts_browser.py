"""Page alerts in Chromium: one sound of the row's tier and one notification per burst,
nothing for rows already on the page or below the thresholds (Notification and
AudioContext stubbed in the page, their calls recorded)."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest

from tests.conftest import OUTPUT, ROWS, WAIT_MS, expect_status, settled_rows, wait_for_new_rows
from tests.factories import force_order

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

SETTINGS = {
    "sound": True,
    "tier1": 100_000,
    "tier2": 1_000_000,
    "tier3": 10_000_000,
    "notify": True,
    "notifyMin": 1_000_000,
}

STUBS = """
window.__alerts = { tones: [], notes: [], contexts: 0 };
class FakeParam {
  constructor() { this.value = 0; }
  setValueAtTime(v) { this.value = v; }
  linearRampToValueAtTime() {}
  exponentialRampToValueAtTime() {}
}
window.AudioContext = class {
  constructor() {
    this.state = "running"; this.currentTime = 0; this.destination = {};
    window.__alerts.contexts++;
  }
  createOscillator() {
    const osc = { type: "", frequency: new FakeParam(), connect() {}, stop() {},
                  start() { window.__alerts.tones.push(osc.frequency.value); } };
    return osc;
  }
  createGain() { return { gain: new FakeParam(), connect() {} }; }
  resume() { return Promise.resolve(); }
};
window.Notification = function (title, options) {
  window.__alerts.notes.push({ title, body: options && options.body });
};
window.Notification.permission = "granted";
window.Notification.requestPermission = () => Promise.resolve("granted");
"""


def usd_order(usd: int, **kwargs) -> dict:
    return force_order(z=str(Decimal(usd) / 100_000), ap="100000", **kwargs)


async def recorded(page) -> dict:
    return await page.evaluate("window.__alerts")


async def test_a_2m_row_makes_one_tier_2_sound_and_one_notification(browser, live_app):
    exchange = live_app.exchange
    await exchange.wait_for_clients(1, timeout=20)
    # Already stored when the page loads: never alerts.
    await exchange.broadcast(usd_order(50_000_000))
    await settled_rows(live_app.url)

    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.add_init_script(STUBS)
    await page.add_init_script(f"localStorage.setItem('orderfox-alerts', '{json.dumps(SETTINGS)}')")
    await page.goto(live_app.url)
    await expect_status(page, "Connected")
    assert await page.inner_text(".alerts-state") == "sound+notify"
    first = max(
        int(i) for i in await page.eval_on_selector_all(ROWS, "r => r.map(x => x.dataset.id)")
    )

    await exchange.broadcast(usd_order(2_000_000, symbol="ETHUSDT"))
    await wait_for_new_rows(page, first)
    await page.wait_for_function("() => window.__alerts.notes.length >= 1", timeout=WAIT_MS)
    await asyncio.sleep(1.0)
    alerts = await recorded(page)
    assert alerts["tones"] == [660]  # tier 2: from $1M
    assert alerts["notes"] == [
        {"title": "OrderFox liquidations", "body": "ETHUSDT long liquidated $2.0M"}
    ]

    # Below the lowest tier and the notification minimum: nothing.
    await exchange.broadcast(usd_order(60_000))
    await wait_for_new_rows(page, first, count=2)
    await asyncio.sleep(1.5)
    assert await recorded(page) == alerts

    # A burst: one sound of its largest tier, one notification summing the rows from $1M.
    await exchange.broadcast(usd_order(1_500_000))
    await exchange.broadcast(usd_order(12_000_000, symbol="SOLUSDT", side="BUY"))
    await exchange.broadcast(usd_order(200_000))
    await wait_for_new_rows(page, first, count=5)
    await page.wait_for_function("() => window.__alerts.notes.length >= 2", timeout=WAIT_MS)
    await asyncio.sleep(1.0)
    alerts = await recorded(page)
    assert alerts["tones"] == [660, 880]
    assert alerts["notes"][1]["body"] == "2 liquidations, $13.5M, largest SOLUSDT $12.0M"
    await page.click(".alerts-toggle")
    await page.screenshot(path=OUTPUT / "alerts-settings.png")
    assert errors == []


async def test_settings_are_saved_and_page_filters_apply(browser, live_app):
    exchange = live_app.exchange
    await exchange.wait_for_clients(1, timeout=20)
    page = await browser.new_page()
    await page.add_init_script(STUBS)
    await page.goto(live_app.url + "?side=short")
    await expect_status(page, "Connected")
    assert await page.inner_text(".alerts-state") == "off"
    await page.click(".alerts-toggle")
    await page.check(".alerts-panel input[name=sound]")
    await page.fill(".alerts-panel input[name=tier1]", "500000")
    await page.press(".alerts-panel input[name=tier1]", "Tab")
    saved = json.loads(await page.evaluate("localStorage.getItem('orderfox-alerts')"))
    assert saved["sound"] is True and saved["tier1"] == 500_000 and saved["notify"] is False
    assert (await recorded(page))["contexts"] == 1  # made on the click

    # Shorts only on this page: a $3M long makes nothing, a $600k short the low tone.
    await exchange.broadcast(usd_order(3_000_000, side="SELL"))
    await exchange.broadcast(usd_order(400_000, side="BUY"))  # under the saved low tier
    await page.wait_for_selector(ROWS, timeout=WAIT_MS)
    await asyncio.sleep(1.5)
    assert (await recorded(page))["tones"] == []
    await exchange.broadcast(usd_order(600_000, side="BUY"))
    await page.wait_for_function("() => window.__alerts.tones.length >= 1", timeout=WAIT_MS)
    assert (await recorded(page))["tones"] == [440]
    assert (await recorded(page))["notes"] == []  # notifications were never turned on

    # A reload keeps the settings; the rows now on the page stay silent.
    await page.reload()
    await expect_status(page, "Connected")
    assert await page.inner_text(".alerts-state") == "sound"
    assert await page.input_value(".alerts-panel input[name=tier1]") == "500000"
    await asyncio.sleep(1.5)
    assert (await recorded(page))["tones"] == []
