"""A row the database refuses costs only itself: dead letters, and the rest of the batch stored.

On PostgreSQL a NUL in a text field made the server refuse the whole batch (266 valid
events lost in one run). The parser now refuses control characters (a malformed frame);
whatever the database still refuses is isolated by splitting the batch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io

import orjson
import pytest
from channels.db import database_sync_to_async as sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from liquidations.ingest.pipeline import Ingest
from liquidations.ingest.store import Batch
from liquidations.ingest.venue import VenueIngest
from liquidations.ingest.venues import venue_adapter
from liquidations.models import DeadLetter, Liquidation, WorkerState
from liquidations.upstream.binance import parse_frame
from tests.factories import force_order

pytestmark = pytest.mark.django_db(transaction=True)


def _batch(valid: int, refused: dict[int, str]) -> Batch:
    """valid events; at the given positions, one whose order type is the given text,
    built past the parser (as a venue parser that forgot to check would)."""
    batch = Batch()
    for n in range(valid + len(refused)):
        raw = orjson.dumps(force_order(symbol="BTCUSDT", z=f"0.{n + 1:03d}"))
        event = parse_frame(raw)
        if n in refused:
            event = dataclasses.replace(event, order_type=refused[n])
            raw = orjson.dumps({"o": {"o": refused[n]}, "note": "as received"})
        batch.add(event, raw)
    return batch


async def _store_through_the_writer(batch: Batch) -> tuple[VenueIngest, list[dict]]:
    """Store the batch through the Binance pipeline's own writer, as its stream would."""
    layer = get_channel_layer()
    member = await layer.new_channel()
    await layer.group_add("liquidations.all", member)
    venue = VenueIngest(
        adapter=venue_adapter("binance"), channel_layer=layer, max_backlog_bytes=2**20
    )
    try:
        await venue.writer.store(batch)
        message = await asyncio.wait_for(layer.receive(member), 5)
    finally:
        await venue.aclose()
        await layer.group_discard("liquidations.all", member)
    return venue, message["rows"]


@pytest.fixture
def refusing_trigger():
    """Make the database itself refuse rows whose order type is REFUSE (SQLite)."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite trigger; PostgreSQL has its own test with a real NUL")
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TRIGGER refuse_test BEFORE INSERT ON liquidations_liquidation "
            "WHEN NEW.order_type = 'REFUSE' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER refuse_test")


async def test_refused_rows_become_dead_letters_and_the_rest_is_stored(refusing_trigger):
    batch = _batch(198, {17: "REFUSE", 150: "REFUSE"})
    ingest, rows = await _store_through_the_writer(batch)
    assert await sync_to_async(Liquidation.objects.count)() == 198
    assert len(rows) == 198  # broadcast too
    letters = await sync_to_async(list)(DeadLetter.objects.order_by("id"))
    assert len(letters) == 2
    assert all("refused by the test" in letter.error for letter in letters)
    assert all('"as received"' in letter.frame for letter in letters)
    assert {letter.venue for letter in letters} == {"binance"}
    assert ingest.status.dead_letters == 2
    assert ingest.status.events_stored == 198
    assert ingest.status.duplicates_skipped == 0
    assert (
        "refused by the test"
        in ingest.status.as_message()["last_errors"]["dead letters"]["message"]
    )


@pytest.mark.production
async def test_pg_a_nul_costs_only_its_own_row():
    batch = _batch(266, {100: "LIM\x00IT"})
    ingest, rows = await _store_through_the_writer(batch)
    assert await sync_to_async(Liquidation.objects.count)() == 266
    assert len(rows) == 266
    (letter,) = await sync_to_async(list)(DeadLetter.objects.all())
    assert "\\u0000 cannot be converted to text" in letter.error
    assert "LIM\\u0000IT" in letter.frame
    assert letter.venue == "binance"
    assert ingest.status.dead_letters == 1


async def _stream(fake_exchange, frames: list[str], expect_stored: int) -> Ingest:
    ingest = Ingest(channel_layer=get_channel_layer())
    await ingest.start()
    try:
        await fake_exchange.wait_for_clients(1)
        for text in frames:
            await fake_exchange.broadcast(text)
        async with asyncio.timeout(20):
            while await sync_to_async(Liquidation.objects.count)() < expect_stored:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # nothing more arrives
    finally:
        await ingest.stop()
        await ingest.aclose()
    return ingest


def _frames_with_a_nul(valid: int) -> list[str]:
    frames = [orjson.dumps(force_order(z=f"0.{n + 1:03d}")).decode() for n in range(valid)]
    bad = force_order()
    bad["o"]["o"] = "LIM\u0000IT"
    frames.insert(valid // 2, orjson.dumps(bad).decode())
    return frames


async def test_a_frame_with_a_nul_is_malformed_and_the_rest_stored(
    upstream_settings, fake_exchange
):
    ingest = await _stream(fake_exchange, _frames_with_a_nul(60), expect_stored=60)
    assert await sync_to_async(Liquidation.objects.count)() == 60
    assert ingest.status.malformed_dropped == 1
    assert ingest.status.dead_letters == 0


@pytest.mark.production
async def test_pg_a_frame_with_a_nul_is_malformed_and_the_rest_stored(
    upstream_settings, fake_exchange
):
    ingest = await _stream(fake_exchange, _frames_with_a_nul(266), expect_stored=266)
    assert await sync_to_async(Liquidation.objects.count)() == 266
    assert ingest.status.malformed_dropped == 1


def test_dead_letters_are_listed_read_only_in_the_admin(client):
    DeadLetter.objects.create(
        created_at="2026-12-01T00:00:00Z",
        venue="okx",
        frame='{"o": "<b>x</b>"}',
        error="DataError: NUL",
    )
    client.force_login(User.objects.create_superuser("root", password="x"))
    response = client.get("/admin/liquidations/deadletter/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "DataError: NUL" in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert client.get("/admin/liquidations/deadletter/add/").status_code == 403


def test_status_shows_the_dead_letter_count_and_the_last_error_per_kind():
    DeadLetter.objects.create(
        created_at="2026-12-01T00:00:00Z", venue="bybit", frame="{}", error="DataError"
    )
    WorkerState.objects.create(
        state="streaming",
        heartbeat_at=timezone.now(),
        last_errors={
            "malformed frames": {"at": "2026-12-01T00:00:01+00:00", "message": "not JSON"},
            "database": {"at": "2026-12-01T00:00:02+00:00", "message": "connection refused"},
        },
    )
    out, err = io.StringIO(), io.StringIO()
    call_command("liquidations", "status", "--timeout", "0.1", stdout=out, stderr=err)
    text = out.getvalue()
    assert "dead letters:       1" in text
    assert "malformed frames:   2026-12-01T00:00:01+00:00  not JSON" in text
    assert "database:           2026-12-01T00:00:02+00:00  connection refused" in text
