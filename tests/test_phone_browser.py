"""Every page on a phone (390 × 844 in Chromium), with live rows from the fake exchange:
no sideways scrolling, no clipped text, each table header over its column."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest

from tests.conftest import OUTPUT, ROWS, WAIT_MS, feeding
from tests.factories import wide_events

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

PHONE = {"width": 390, "height": 844}
ADMIN_PASSWORD = "phone-test-only"

# Evaluated in the page; returns a list of human-readable problems (empty: the page fits).
# `scrollOk`: selectors of boxes meant to scroll sideways (Django admin's results table).
FITS_PHONE_JS = """
(scrollOk) => {
  const problems = [];
  // Screen-reader-only text (a 1 px clipped box) is not drawn, so it cannot be cut off.
  const srOnly = (el) => {
    for (let a = el; a; a = a.parentElement) {
      const r = a.getBoundingClientRect();
      if (r.width <= 1 && r.height <= 1 && getComputedStyle(a).overflow !== "visible") return true;
    }
    return false;
  };
  const visible = (el) => el.checkVisibility({ visibilityProperty: true, opacityProperty: true })
    && el.getClientRects().length > 0 && !srOnly(el);
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + [...el.classList].map((c) => "." + c).join("");
  const text = (el) => (el.innerText || el.textContent || "").trim().replace(/\\s+/g, " ");
  const label = (el) => `${name(el)} "${text(el).slice(0, 80)}"`;
  const span = (rect) => `${Math.round(rect.left)}–${Math.round(rect.right)} px`;
  const all = [...document.body.querySelectorAll("*")].filter(visible);

  // 1. The page does not scroll sideways; name the innermost elements past the edge.
  const root = document.scrollingElement;
  if (root.scrollWidth > innerWidth) {
    const past = all.filter((el) => el.getBoundingClientRect().right > innerWidth + 1);
    const innermost = past.filter((el) => !past.some((o) => o !== el && el.contains(o)));
    problems.push(`page scrolls sideways: scrollWidth ${root.scrollWidth} > ${innerWidth}; `
      + `past the edge: ${innermost.slice(0, 6).map(label).join(", ")}`);
  }

  for (const el of all) {
    if (!text(el)) continue;
    const style = getComputedStyle(el);
    // 2. No element clips its own text (overflow hidden/clip, ellipsis included) ...
    const clipsX = ["hidden", "clip"].includes(style.overflowX);
    const clipsY = ["hidden", "clip"].includes(style.overflowY);
    if (clipsX && el.scrollWidth > el.clientWidth + 1) {
      problems.push(`clips its text sideways (${el.scrollWidth} > ${el.clientWidth} px): `
        + label(el));
    } else if (clipsY && el.scrollHeight > el.clientHeight + 1) {
      problems.push(`clips its text (${el.scrollHeight} > ${el.clientHeight} px high): `
        + label(el));
    } else if (["auto", "scroll"].includes(style.overflowX)
               && el.scrollWidth > el.clientWidth + 1 && !scrollOk.some((s) => el.matches(s))) {
      // ... nor hides it in a box that scrolls sideways.
      problems.push(`scrolls sideways (${el.scrollWidth} > ${el.clientWidth} px): ${label(el)}`);
    }
  }

  // 3. Text stays inside the card it is drawn in (the nearest box with a background or
  // side borders): an amount must not run past the edge of its stats card.
  const isBox = (el) => {
    const s = getComputedStyle(el);
    const bg = s.backgroundColor;
    return (bg !== "transparent" && bg !== "rgba(0, 0, 0, 0)")
      || (parseFloat(s.borderLeftWidth) > 0 && parseFloat(s.borderRightWidth) > 0);
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const spilled = new Set();
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!node.textContent.trim() || !parent || !visible(parent)) continue;
    let box = parent;
    while (box && box !== document.body && !isBox(box)) box = box.parentElement;
    if (!box || spilled.has(parent)) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    const r = range.getBoundingClientRect();
    const b = box.getBoundingClientRect();
    if (r.width && (r.left < b.left - 1 || r.right > b.right + 1)) {
      spilled.add(parent);
      problems.push(`text runs past its box ${name(box)} (${span(r)} outside ${span(b)}): `
        + label(parent));
    }
  }

  // 4. Each visible header stands over its column: the i-th visible th's centre lies within
  // the i-th visible cell of the first rows (hidden cells do not count).
  for (const table of document.querySelectorAll("table")) {
    if (!visible(table)) continue;
    const heads = [...table.querySelectorAll("thead th")].filter(visible);
    if (!heads.length) continue;
    const rows = [...table.querySelectorAll("tbody tr")]
      .filter((row) => visible(row) && !row.querySelector("[colspan]")).slice(0, 5);
    for (const row of rows) {
      const cells = [...row.children].filter(visible);
      if (cells.length !== heads.length) {
        problems.push(`${name(table)}: ${heads.length} visible headers `
          + `(${heads.map(text).join(" | ")}) over ${cells.length} visible cells: ${label(row)}`);
        break;
      }
      heads.forEach((th, i) => {
        const h = th.getBoundingClientRect();
        const c = cells[i].getBoundingClientRect();
        const centre = (h.left + h.right) / 2;
        if (centre < c.left || centre > c.right) {
          problems.push(`${name(table)}: header "${text(th)}" (centre ${Math.round(centre)}) is`
            + ` not over its cell ${label(cells[i])} (${span(c)})`);
        }
      });
    }
  }
  return problems;
}
"""


def _stored_count(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:
        return len(json.loads(response.read()))


async def _wait_stored(live_app, count: int) -> None:
    url = f"{live_app.url}api/v1/liquidation-orders?limit=1000"
    async with asyncio.timeout(WAIT_MS / 1000):
        while await asyncio.to_thread(_stored_count, url) < count:
            await asyncio.sleep(0.2)


async def _assert_fits(page, shot: str, scroll_ok: tuple[str, ...] = ()) -> None:
    await page.screenshot(path=OUTPUT / shot)
    problems = await page.evaluate(FITS_PHONE_JS, list(scroll_ok))
    if problems:
        pytest.fail(f"{page.url} at 390 × 844 (see test-output/{shot}):\n" + "\n".join(problems))


async def _live_rows(page) -> None:
    """Wait for rows that came over the socket, not only the server-rendered ones."""
    cursor = int(await page.get_attribute("#feed", "data-cursor"))
    await page.wait_for_function(
        """([selector, after]) => [...document.querySelectorAll(selector)]
               .filter(r => +r.dataset.id > after).length >= 3""",
        arg=[ROWS, cursor],
        timeout=WAIT_MS,
    )


@pytest.mark.parametrize("page_name", ["dashboard", "symbol", "history", "admin"])
async def test_page_fits_a_phone(browser, live_app, page_name):  # noqa: F811
    exchange = live_app.exchange
    await exchange.wait_for_clients(1, timeout=20)
    for event in wide_events(exchange):
        await exchange.broadcast(event)
    await _wait_stored(live_app, 6)

    context = await browser.new_context(viewport=PHONE, device_scale_factor=2)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    scroll_ok: tuple[str, ...] = ()
    async with feeding(exchange, rate=20):
        await _wait_stored(live_app, 60)
        if page_name == "dashboard":
            await page.goto(live_app.url)
            await _live_rows(page)
        elif page_name == "symbol":
            await page.goto(f"{live_app.url}BTCUSDT/")
            await page.wait_for_function(
                "() => document.querySelector('#candle-chart .candle-chart-canvas')"
                ".dataset.state === 'ready'",
                timeout=WAIT_MS,
            )
            await _live_rows(page)
        elif page_name == "history":
            await page.goto(f"{live_app.url}history/")
            await page.wait_for_selector("#history-rows tr.liq-row", timeout=WAIT_MS)
        else:
            await asyncio.to_thread(live_app.create_superuser, "root", ADMIN_PASSWORD)
            await page.goto(f"{live_app.url}admin/liquidations/liquidation/")
            await page.fill("#id_username", "root")
            await page.fill("#id_password", ADMIN_PASSWORD)
            await page.click("input[type=submit]")
            await page.wait_for_selector("#result_list tbody tr", timeout=WAIT_MS)
            # Django's own phone layout scrolls the results table inside its box.
            scroll_ok = ("#changelist .results",)
        await _assert_fits(page, f"phone-{page_name}.png", scroll_ok)
    assert errors == []
    await context.close()
