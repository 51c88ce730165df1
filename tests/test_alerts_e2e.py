"""The issue's "done when": `manage.py alerts add` and `manage.py serve` fed by the fake
exchange; the receiver gets every stored liquidation of at least $1M once, signed,
within 5 s of its storage (printed with -s), and none below."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import sqlite3
import subprocess
import sys
from datetime import datetime
from decimal import Decimal

import pytest

from tests.conftest import REPO, LiveApp
from tests.factories import force_order

pytestmark = pytest.mark.timeout(120)


def manage(app: LiveApp, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args],
        env=app.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def stored_rows(app: LiveApp) -> dict[int, tuple[Decimal, float]]:
    """id -> (USD, received_at as epoch seconds) of every stored liquidation."""
    with sqlite3.connect(app.data_dir / "db.sqlite3") as db:
        rows = db.execute("SELECT id, notional_usd, received_at FROM liquidations_liquidation")
        return {
            pk: (Decimal(str(usd)), datetime.fromisoformat(at).timestamp()) for pk, usd, at in rows
        }


async def test_alerts_add_then_every_big_stored_liquidation_reaches_the_webhook_once(
    tmp_path, fake_exchange, receiver
):
    app = LiveApp(
        data_dir=tmp_path,
        ws_base_url=fake_exchange.ws_base_url,
        rest_base_url=fake_exchange.rest_base_url,
    )
    app.env["ALERT_ALLOW_PRIVATE_TARGETS"] = "1"
    out = manage(
        app, "alerts", "add", "--min-usd", "1000000", "--webhook", receiver.url(), "--secret", "s"
    )
    assert out.startswith("Added rule-1") and "--secret" not in out
    await asyncio.to_thread(app.start)
    try:
        await fake_exchange.wait_for_clients(1, timeout=20)
        amounts = [3_000_000, 20_000, 1_000_000, 999_999, 5_500_000, 150_000] * 4
        for n, usd in enumerate(amounts):
            await fake_exchange.broadcast(force_order(z=str(Decimal(usd) / 100_000), ap="100000"))
            if n % 6 == 5:
                await asyncio.sleep(0.7)  # a few bursts, a few seconds apart

        def all_big(r) -> bool:
            return sum(len(x.json()["liquidations"]) for x in r.accepted()) >= 12

        await receiver.wait_until(all_big, timeout=20, what="12 liquidations of $1M or more")
        await asyncio.sleep(2.5)  # nothing more, nothing twice
    finally:
        await asyncio.to_thread(app.stop)
    stored = stored_rows(app)
    assert len(stored) == len(amounts)
    big = {pk for pk, (usd, _) in stored.items() if usd >= 1_000_000}
    arrivals: dict[int, float] = {}
    for request in receiver.requests:
        digest = hmac.new(b"s", request.body, hashlib.sha256).hexdigest()
        assert request.headers["X-OrderFox-Signature"] == f"sha256={digest}"
        for item in request.json()["liquidations"]:
            assert item["id"] not in arrivals, "delivered twice"
            arrivals[item["id"]] = request.wall
    assert set(arrivals) == big
    # The issue asks for 5 s at most; a speed, so reported rather than asserted (make bench).
    delays = [arrivals[pk] - stored[pk][1] for pk in big]
    print(f"storage -> webhook: max {max(delays):.2f} s, mean {sum(delays) / len(delays):.2f} s")
