"""CSV downloads: every cell a spreadsheet would read as a formula is neutralised (OWASP)."""

from __future__ import annotations

import csv
import dataclasses
import io

import pytest
from django.contrib.auth.models import User

from liquidations.upstream.binance import parse_frame
from liquidations.web.exports import csv_cell
from tests.factories import DAY_BOUNDARY_S, frame, liq, store_events

# What spreadsheets take for a formula: the OWASP list (= + - @ tab CR), a leading LF,
# whitespace before any of them, and the full-width forms some spreadsheets also accept.
HOSTILE = [
    '=HYPERLINK("http://x")',
    "+1",
    "-1+1",
    "@SUM(1)",
    "\t=1",
    "\r=1",
    "\n=1",
    " =1",
    "\u3000=1",
    "\u200b=1",  # an invisible character first
    "\u00a0 @1",
    "\uff1d1",
    "\uff0b1",
    "\uff0d1",
    "\uff201",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_formula_cell_gets_a_quote_prefix(value):
    assert csv_cell(value) == "'" + value


@pytest.mark.parametrize(
    "value", ["LIMIT", "BTCUSDT", "", "a=1", "1.5", "Über", "\uff11\uff12", "2026-12-01T00:00"]
)
def test_plain_text_is_left_alone(value):
    assert csv_cell(value) == value


def _store_hostile() -> None:
    """Store one row per hostile order type (built past the parser, as a venue might)."""
    base = parse_frame(frame(liq(symbol="BTCUSDT", T=DAY_BOUNDARY_S * 1000)))
    store_events(
        [
            dataclasses.replace(base, order_type=value, trade_time_ms=base.trade_time_ms + n)
            for n, value in enumerate(HOSTILE)
        ]
    )


def _order_types(text: str) -> set[str]:
    return {row["order_type"] for row in csv.DictReader(io.StringIO(text, newline=""))}


@pytest.mark.django_db
def test_admin_export_guards_every_formula(client):
    _store_hostile()
    client.force_login(User.objects.create_superuser("root", password="x"))
    response = client.post(
        "/admin/liquidations/liquidation/",
        {"action": "export_csv", "select_across": "1", "_selected_action": ["1"]},
    )
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode()
    assert _order_types(text) == {"'" + value for value in HOSTILE}


@pytest.mark.django_db(transaction=True)
async def test_history_export_guards_every_formula(async_client):
    from asgiref.sync import sync_to_async

    await sync_to_async(_store_hostile)()
    response = await async_client.get("/history/csv")
    text = b"".join([chunk async for chunk in response.streaming_content]).decode()
    assert _order_types(text) == {"'" + value for value in HOSTILE}
