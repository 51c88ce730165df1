"""The fan-out's coalescing window: sized from what rounds cost, zero when quiet."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request

import pytest

from liquidations.live.coalescing import CoalescingWindow
from liquidations.live.contracts import MAX_ROWS
from tests.conftest import LiveApp


def test_a_quiet_process_never_waits():
    window = CoalescingWindow(budget=0.25, max_window=0.1, clock=lambda: 0.0)
    assert window.hold(0.0) == 0.0  # nothing measured yet
    # A 20-viewer round: 0.2 ms. Rounds may start 0.8 ms apart; at 50 events/s the next
    # message comes 20 ms later, long after that.
    window.round_done(started=1.000, ended=1.0002, frames=20, held=0.0)
    assert window.window == pytest.approx(0.0008)
    assert window.hold(1.020) == 0.0
    report = window.report(viewers=20)
    assert report.held_share == 0.0
    assert report.reason.startswith("quiet")


def test_under_load_rounds_start_cost_over_budget_apart():
    window = CoalescingWindow(budget=0.25, max_window=0.1, clock=lambda: 0.0)
    window.round_done(started=1.000, ended=1.003, frames=200, held=0.0)
    # A 3 ms round and a quarter of the process for writing: the next starts 12 ms after.
    assert window.window == pytest.approx(0.012)
    assert window.hold(1.004) == pytest.approx(0.008)
    assert window.hold(1.013) == 0.0
    window.round_done(started=1.012, ended=1.015, frames=200, held=0.008)
    report = window.report(viewers=200)
    assert report.reason.startswith("load: 50% of rounds waited")
    assert report.held_mean_ms == pytest.approx(8.0)
    assert report.frames_per_s > 0 and report.viewers == 200


def test_the_cost_is_averaged_over_recent_rounds():
    window = CoalescingWindow(budget=0.5, max_window=1.0)
    window.round_done(started=0.0, ended=0.010, frames=1, held=0.0)
    # One cheap round barely moves it; many bring it down.
    window.round_done(started=1.0, ended=1.0, frames=1, held=0.0)
    assert window.cost == pytest.approx(0.009)
    for start in range(2, 60):
        window.round_done(started=float(start), ended=float(start), frames=1, held=0.0)
    assert window.cost < 0.0001


def test_the_window_is_capped_and_can_be_turned_off():
    capped = CoalescingWindow(budget=0.1, max_window=0.05)
    capped.round_done(started=0.0, ended=0.020, frames=1000, held=0.0)
    assert capped.window == 0.05  # not 200 ms: past the cap the process gets busier
    assert "the longest allowed" in capped.report(viewers=1000).reason
    off = CoalescingWindow(budget=0.1, max_window=0.0)
    off.round_done(started=0.0, ended=0.020, frames=1000, held=0.0)
    assert off.window == 0.0 and off.hold(0.021) == 0.0
    whole = CoalescingWindow(budget=1.0, max_window=0.1)
    whole.round_done(started=0.0, ended=0.020, frames=1000, held=0.0)
    assert whole.window == 0.0
    assert whole.report(viewers=1).reason.startswith("no window")


@pytest.mark.parametrize("budget", [0.0, -0.5, 1.5])
def test_a_budget_outside_the_process_is_refused(budget):
    with pytest.raises(ValueError, match="share of the process"):
        CoalescingWindow(budget=budget, max_window=0.1)


def test_report_restarts_its_interval_only_when_asked():
    now = [0.0]
    window = CoalescingWindow(budget=0.5, max_window=0.1, clock=lambda: now[0])
    window.round_done(started=0.0, ended=0.001, frames=10, held=0.0)
    now[0] = 2.0
    assert window.report(viewers=10).frames_per_s == pytest.approx(5.0)
    assert window.report(viewers=10, restart=True).rounds_per_s == pytest.approx(0.5)
    now[0] = 3.0
    assert window.report(viewers=10).rounds_per_s == 0.0


# -- the app as users run it -------------------------------------------------------------


def _row_ids(frame: str) -> list[int]:
    """The row ids of a rows frame, oldest first (the frame lists them newest first)."""
    return [int(row_id) for row_id in reversed(re.findall(r'<tr id="liq-(\d+)"', frame))]


@pytest.mark.timeout(120)
async def test_a_crash_day_reaches_every_viewer_whole_and_in_order(tmp_path, fake_exchange):
    """Real daphne, real worker: a burst coalesced into rounds, every row once, in order.

    A tiny budget forces a window on any machine, so rounds must merge batches; each of
    the viewers still gets every stored row once, oldest to newest, and /health shows the
    window with its reason.
    """
    from websockets.asyncio.client import connect

    app = LiveApp(
        data_dir=tmp_path,
        ws_base_url=fake_exchange.ws_base_url,
        rest_base_url=fake_exchange.rest_base_url,
        ws_public_url=fake_exchange.ws_public_url,
    )
    app.env.update(LIVE_FANOUT_BUDGET="0.01", LIVE_FANOUT_MAX_WINDOW="0.05")
    app.start()
    try:
        await fake_exchange.wait_for_clients(1, timeout=30)
        url = f"ws://127.0.0.1:{app.port}/ws/liquidations/"
        origin = f"http://127.0.0.1:{app.port}"
        viewers = 12
        frames: list[list[list[int]]] = [[] for _ in range(viewers)]

        async def watch(index: int, ws, newest: int) -> None:
            while not frames[index] or frames[index][-1][-1] < newest:
                ids = _row_ids(await ws.recv())
                if ids:
                    frames[index].append(ids)

        sockets = [await connect(url, origin=origin) for _ in range(viewers)]
        try:
            await asyncio.sleep(0.5)  # every socket joined the hub
            sent = await fake_exchange.generate(rate=400, duration=2.0)
            async with asyncio.timeout(60):
                await asyncio.gather(*(watch(i, ws, sent) for i, ws in enumerate(sockets)))
            health = await asyncio.to_thread(_health, app.port)
        finally:
            for ws in sockets:
                await ws.close()
    finally:
        app.stop()
    first = frames[0]
    for received in frames:
        # The very same frames, in the same order, for every viewer with this filter.
        assert received == first
    _assert_whole_and_in_order(first, newest=sent)
    # Coalesced: far fewer frames than the ~800 batches a 400/s burst makes in 2 s.
    assert len(first) < sent / 2
    (hub,) = health["fanout"]
    assert hub["viewers"] == viewers
    assert hub["window_ms"] > 0 and hub["budget"] == 0.01
    assert hub["reason"].startswith("load:")


def _assert_whole_and_in_order(frames: list[list[int]], *, newest: int) -> None:
    """Rows 1..newest, each once, in order; a row may be missing only where the frame
    after it was capped at 50 rows (the table's size: what it replaced was never shown)."""
    expected_next = 1
    for ids in frames:
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        if ids[0] != expected_next:
            assert ids[0] > expected_next and len(ids) == MAX_ROWS, (expected_next, ids[:3])
        expected_next = ids[-1] + 1
    assert expected_next == newest + 1


def _health(port: int) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/health")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:  # 503 still carries the body
        return json.loads(exc.read())
