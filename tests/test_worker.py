"""The ingest worker against the fake exchange over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import re
import signal
import socket
import sqlite3
import sys
import time
from datetime import timedelta

import orjson
import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.core.management import CommandError, call_command
from django.db import connections
from django.utils import timezone

from liquidations.ingest.backlog import Backlog
from liquidations.ingest.pipeline import Ingest
from liquidations.ingest.store import Batch
from liquidations.ingest.venue import VenueIngest
from liquidations.ingest.venues import venue_adapter
from liquidations.ingest.worker import worker_create
from liquidations.management.commands.liquidations import _request
from liquidations.models import ConnectionGap, Liquidation, Symbol, WorkerState
from liquidations.upstream.binance import parse_frame
from liquidations.upstream.client import Backoff, UpstreamClient
from liquidations.upstream.events import MalformedFrame
from liquidations.upstream.exchange_info import ExchangeInfoError
from tests.conftest import REPO, eventually, exchange_env, run_command
from tests.factories import force_order

pytestmark = pytest.mark.django_db(transaction=True)


async def stored_count() -> int:
    return await sync_to_async(Liquidation.objects.count)()


async def status() -> dict:
    reply = await _request("stream.status", 5.0)
    assert reply is not None, "the worker did not answer stream.status"
    return reply


def stored_at_least(n: int):
    async def check() -> bool:
        return await stored_count() >= n

    return check


@pytest.fixture
async def channel_layer():
    layer = get_channel_layer()
    await layer.flush()
    yield layer
    await layer.flush()


@pytest.fixture
async def worker(upstream_settings, channel_layer, fake_exchange):
    """The real LiquidationWorker (as `runworker liquidations` runs it), in this loop."""
    running = worker_create(channel_layer=channel_layer)
    task = asyncio.create_task(running.arun())
    await fake_exchange.wait_for_clients(1)
    yield running
    await running.shutdown()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_events_are_stored_once_and_each_batch_broadcast_with_rendered_rows(
    worker, fake_exchange, channel_layer
):
    member = await channel_layer.new_channel()
    await channel_layer.group_add("liquidations.all", member)
    sent = await fake_exchange.generate(rate=5000, count=40)
    await eventually(stored_at_least(sent), what="40 stored events")

    rows = []
    while len(rows) < sent:
        message = await asyncio.wait_for(channel_layer.receive(member), 5)
        assert message["type"] == "liquidations.batch"
        assert message["rows"], "a batch message carries at least one row"
        rows.extend(message["rows"])
    ids = [row["id"] for row in rows]
    assert len(set(ids)) == sent == await stored_count()
    assert all(f'id="liq-{row["id"]}"' in row["html"] for row in rows)
    assert {row["side"] for row in rows} <= {"BUY", "SELL"}
    await channel_layer.group_discard("liquidations.all", member)


async def test_one_message_per_group_per_batch(upstream_settings, channel_layer):
    venue = VenueIngest(
        adapter=venue_adapter("binance"), channel_layer=channel_layer, max_backlog_bytes=2**20
    )
    all_member = await channel_layer.new_channel()
    btc_member = await channel_layer.new_channel()
    await channel_layer.group_add("liquidations.all", all_member)
    await channel_layer.group_add("liquidations.BTCUSDT", btc_member)
    payloads = [
        force_order(symbol="BTCUSDT", z="1.5", ap="87000"),
        force_order(symbol="ETHUSDT", side="BUY"),
        force_order(symbol="BTCUSDT", side="BUY", z="0.002"),
    ]
    raws = [orjson.dumps(p) for p in payloads]
    raws.append(raws[0])
    await venue.writer.store(Batch(events=[parse_frame(raw) for raw in raws], frames=raws))
    await venue.aclose()

    everything = await asyncio.wait_for(channel_layer.receive(all_member), 5)
    btc = await asyncio.wait_for(channel_layer.receive(btc_member), 5)
    assert [row["symbol"] for row in everything["rows"]] == ["BTCUSDT", "ETHUSDT", "BTCUSDT"]
    assert [row["symbol"] for row in btc["rows"]] == ["BTCUSDT", "BTCUSDT"]
    assert "1.5" in btc["rows"][0]["html"] and "$130,500" in btc["rows"][0]["html"]
    # Nothing more: one message per group for the whole batch, the duplicate not shown.
    for member in (all_member, btc_member):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(channel_layer.receive(member), 0.2)
    assert venue.status.duplicates_skipped == 1


async def test_abrupt_drop_reconnects_after_backoff_and_records_the_gap(
    worker, fake_exchange, upstream_settings
):
    upstream_settings.BINANCE_RECONNECT_INITIAL_SECONDS = 0.3  # applies to the next client
    await fake_exchange.generate(rate=5000, count=5)
    await eventually(stored_at_least(5), what="first events")

    await fake_exchange.drop_connections()
    await fake_exchange.wait_for_connections(2)
    await fake_exchange.generate(rate=5000, count=5)
    await eventually(stored_at_least(10), what="events after the reconnect")

    gap = await sync_to_async(ConnectionGap.objects.get)()
    assert "no close frame" in gap.reason
    assert gap.ended_at > gap.started_at
    reply = await status()
    assert reply["reconnects"] == 1
    assert reply["state"] == "streaming"


async def test_connect_failures_retry_with_growing_backoff(caplog):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    client = UpstreamClient(
        url=f"ws://127.0.0.1:{port}/market/ws/!forceOrder@arr",
        on_message=lambda raw: None,
        on_connected=_noop,
        on_disconnected=_noop_reason,
        backoff=Backoff(initial=0.01, cap=0.04),
    )
    caplog.set_level(logging.WARNING, logger="liquidations.upstream")
    task = asyncio.create_task(client.run())

    async def four_retries() -> bool:
        return sum("failed" in r.getMessage() for r in caplog.records) >= 4

    await eventually(four_retries, what="four connect retries")
    await client.stop()
    await task
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert all("ConnectionRefusedError" in m or "OSError" in m for m in failures)
    assert [f"retry {n} in" in m for n, m in zip(range(1, 5), failures, strict=False)] == [True] * 4


def test_backoff_doubles_with_jitter_up_to_the_cap_and_resets():
    backoff = Backoff(initial=1.0, cap=30.0)
    nominal = [1, 2, 4, 8, 16, 30, 30]
    for expected in nominal:
        delay = backoff.next_delay()
        assert expected / 2 <= delay <= expected
    backoff.reset()
    assert backoff.next_delay() <= 1.0


async def test_events_replayed_after_a_reconnect_are_stored_once(worker, fake_exchange):
    payloads = [force_order(symbol=s) for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT") * 4]
    for payload in payloads:
        await fake_exchange.broadcast(payload)
    await eventually(stored_at_least(12), what="first pass")
    await fake_exchange.drop_connections()
    await fake_exchange.wait_for_connections(2)
    await fake_exchange.wait_for_clients(1)
    for payload in payloads:
        await fake_exchange.broadcast(payload)
    await fake_exchange.broadcast(force_order(symbol="XRPUSDT"))

    async def all_seen() -> bool:
        reply = await status()
        return reply["events_stored"] + reply["duplicates_skipped"] >= 25

    await eventually(all_seen, what="second pass handled")
    assert await stored_count() == 13
    assert (await status())["duplicates_skipped"] == 12


async def test_real_capture_replayed_three_times_across_drops_is_stored_once(
    worker, fake_exchange, real_capture
):
    lines = [line for line in real_capture.read_text().splitlines() if line.strip()]
    unique = set()
    malformed = 0
    for line in lines:
        try:
            unique.add(parse_frame(line).dedup_key)
        except MalformedFrame:
            malformed += 1  # e.g. a real symbol outside ^[A-Z0-9]{1,30}$ (not a group name)
    for lap in range(3):
        if lap:
            await fake_exchange.drop_connections()
            await fake_exchange.wait_for_connections(lap + 1)
            await fake_exchange.wait_for_clients(1)
        assert await fake_exchange.replay(real_capture) == len(lines)

    async def all_seen() -> bool:
        reply = await status()
        handled = reply["events_stored"] + reply["duplicates_skipped"]
        return handled >= 3 * (len(lines) - malformed)

    await eventually(all_seen, timeout=60, what="three passes handled")
    assert await stored_count() == len(unique)
    assert (await status())["malformed_dropped"] == 3 * malformed


async def test_malformed_frames_are_counted_and_skipped_while_events_keep_arriving(
    worker, fake_exchange
):
    sent = await fake_exchange.generate(rate=5000, count=30, malformed_every=5)
    await fake_exchange.broadcast(b"\xff\xfe not even utf-8")
    await eventually(stored_at_least(sent), what="valid events after malformed ones")

    # The status counts a batch once its rows are rendered too, a moment after the commit.
    async def status_caught_up() -> bool:
        return (await status())["events_stored"] == sent

    await eventually(status_caught_up, what="the status to count the stored events")
    reply = await status()
    assert reply["malformed_dropped"] == fake_exchange.malformed_sent + 1 == 7
    assert reply["events_stored"] == 30


async def test_status_stop_and_start_commands(worker, fake_exchange):
    await fake_exchange.generate(rate=5000, count=3)
    await eventually(stored_at_least(3), what="events")

    out = io.StringIO()
    await run_command("liquidations", "status", stdout=out)
    text = out.getvalue()
    assert "state:              streaming" in text
    assert "events stored:      3" in text
    assert "malformed dropped:  0" in text
    assert "last event:" in text and "s ago" in text
    assert f"upstream:           {fake_exchange.ws_base_url}/ws/!forceOrder@arr" in text

    out = io.StringIO()
    await run_command("liquidations", "stop", stdout=out)
    assert "state:              stopped" in out.getvalue()

    async def disconnected() -> bool:
        return fake_exchange.connections == 0

    await eventually(disconnected, what="the upstream socket to close")
    await run_command("liquidations", "start", stdout=io.StringIO())
    await fake_exchange.wait_for_clients(1)
    await fake_exchange.generate(rate=5000, count=2)
    await eventually(stored_at_least(5), what="events after restart")
    gap = await sync_to_async(ConnectionGap.objects.get)()
    assert gap.reason == "stream stopped"


def test_status_without_a_worker_reports_the_last_heartbeat_or_fails_clearly(settings):
    with pytest.raises(CommandError, match="No reply from the worker"):
        call_command("liquidations", "status", "--timeout", "0.05", stdout=io.StringIO())
    with pytest.raises(CommandError, match="did not take the request.*`make run`"):
        call_command("liquidations", "stop", "--timeout", "0.05", stdout=io.StringIO())
    assert WorkerState.objects.get().requested == ""
    WorkerState.objects.filter(id=1).update(
        state="streaming", events_stored=42, malformed_dropped=1, heartbeat_at=timezone.now()
    )
    out, err = io.StringIO(), io.StringIO()
    call_command("liquidations", "status", "--timeout", "0.05", stdout=out, stderr=err)
    assert "last heartbeat from the database" in err.getvalue()
    assert "events stored:      42" in out.getvalue()


async def test_boot_gap_runs_from_the_last_heartbeat(
    upstream_settings, channel_layer, fake_exchange
):
    last_alive = timezone.now() - timedelta(hours=1)
    await sync_to_async(WorkerState.objects.create)(state="streaming", heartbeat_at=last_alive)
    running = worker_create(channel_layer=channel_layer)
    task = asyncio.create_task(running.arun())
    try:
        await fake_exchange.wait_for_clients(1)

        async def gap_closed() -> bool:
            gap = await sync_to_async(ConnectionGap.objects.first)()
            return gap is not None and gap.ended_at > last_alive + timedelta(minutes=59)

        await eventually(gap_closed, what="the boot gap")
    finally:
        await running.shutdown()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    gap = await sync_to_async(ConnectionGap.objects.get)()
    assert gap.started_at == last_alive
    assert gap.reason == "worker not running"


async def test_exchange_info_fills_the_symbol_table_at_start(worker, fake_exchange):
    async def synced() -> bool:
        return await sync_to_async(Symbol.objects.count)() == len(fake_exchange.symbols)

    await eventually(synced, what="the symbol table")
    pepe = await sync_to_async(Symbol.objects.get)(symbol="1000PEPEUSDT")
    assert (pepe.base_asset, pepe.quote_asset, pepe.status) == ("1000PEPE", "USDT", "TRADING")
    assert (pepe.price_precision, pepe.quantity_precision) == (7, 0)
    assert str(pepe.tick_size.normalize()) == "1E-7"
    settling = await sync_to_async(Symbol.objects.get)(symbol="LUNA2USDT")
    assert settling.status == "SETTLING"


async def test_exchange_info_failures_keep_the_table_and_are_retried(
    upstream_settings, channel_layer, fake_exchange, caplog
):
    await sync_to_async(Symbol.objects.create)(
        symbol="OLDUSDT",
        status="TRADING",
        base_asset="OLD",
        quote_asset="USDT",
        price_precision=2,
        quantity_precision=1,
        tick_size="0.01",
        step_size="0.1",
    )
    ingest = Ingest(channel_layer=channel_layer)
    try:
        fake_exchange.rest_status = 503
        with pytest.raises(ExchangeInfoError, match="HTTP 503"):
            await ingest.sync_symbols()
        fake_exchange.rest_status = 200
        fake_exchange.exchange_info_override = {"symbols": "not a list"}
        with pytest.raises(ExchangeInfoError, match="no 'symbols' list"):
            await ingest.sync_symbols()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            upstream_settings.BINANCE_REST_BASE_URL = f"http://127.0.0.1:{probe.getsockname()[1]}"
        with pytest.raises(ExchangeInfoError, match="unreachable"):
            await ingest.sync_symbols()
        assert await sync_to_async(Symbol.objects.count)() == 1

        # The worker's own loop logs the failure, keeps streaming and retries.
        upstream_settings.BINANCE_REST_BASE_URL = fake_exchange.rest_base_url
        upstream_settings.BINANCE_EXCHANGE_INFO_RETRY_SECONDS = 0.05
        fake_exchange.exchange_info_override = None
        fake_exchange.rest_status = 500
        caplog.set_level(logging.WARNING, logger="liquidations.ingest")
        await ingest.start()
        await fake_exchange.wait_for_clients(1)

        async def failed_twice() -> bool:
            return fake_exchange.rest_requests >= 5

        await eventually(failed_twice, what="retried exchangeInfo requests")
        assert any("Instrument listing of binance failed" in r.getMessage() for r in caplog.records)
        fake_exchange.rest_status = 200

        async def synced() -> bool:
            return await sync_to_async(Symbol.objects.count)() == 1 + len(fake_exchange.symbols)

        await eventually(synced, what="the symbol table after the REST API recovered")
        await fake_exchange.generate(rate=5000, count=3)
        await eventually(stored_at_least(3), what="events streamed meanwhile")
    finally:
        await ingest.stop()
        await ingest.aclose()


async def test_unrouted_legacy_path_connects_but_delivers_nothing(fake_exchange):
    """The fake exchange behaves like Binance since 2026-04-23 on the retired /ws path."""
    from websockets.asyncio.client import connect

    legacy = fake_exchange.ws_base_url.removesuffix("/market") + "/ws/!forceOrder@arr"
    async with connect(legacy) as ws:
        await ws.send('{"method":"SUBSCRIBE","params":["!forceOrder@arr"],"id":7}')
        assert orjson.loads(await ws.recv()) == {"result": None, "id": 7}
        assert await fake_exchange.broadcast(force_order()) == 0
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.2)


async def test_combined_stream_gets_only_its_symbols_wrapped(fake_exchange):
    from websockets.asyncio.client import connect

    url = f"{fake_exchange.ws_base_url}/stream?streams=btcusdt@forceOrder/ethusdt@forceOrder"
    async with connect(url) as ws:
        await fake_exchange.wait_for_clients(1)
        assert await fake_exchange.broadcast(force_order(symbol="SOLUSDT")) == 0
        assert await fake_exchange.broadcast(force_order(symbol="ETHUSDT")) == 1
        frame = orjson.loads(await ws.recv())
        assert frame["stream"] == "ethusdt@forceOrder"
        assert frame["data"]["o"]["s"] == "ETHUSDT"
        await ws.send('{"method":"LIST_SUBSCRIPTIONS","id":1}')
        reply = orjson.loads(await ws.recv())
        assert reply == {"result": ["btcusdt@forceOrder", "ethusdt@forceOrder"], "id": 1}


async def _noop() -> None:
    return None


async def _noop_reason(reason: str) -> None:
    return None


class _Recorder:
    """Callbacks of an UpstreamClient that remember what happened."""

    def __init__(self) -> None:
        self.frames: list[str | bytes] = []
        self.connected = 0
        self.disconnects: list[str] = []

    def on_message(self, raw: str | bytes) -> None:
        self.frames.append(raw)

    async def on_connected(self) -> None:
        self.connected += 1

    async def on_disconnected(self, reason: str) -> None:
        self.disconnects.append(reason)


def _recorded_client(exchange, calls: _Recorder, **options) -> UpstreamClient:
    """An UpstreamClient on the exchange's all-market stream reporting to calls."""
    return UpstreamClient(
        url=f"{exchange.ws_base_url}/ws/!forceOrder@arr",
        on_message=calls.on_message,
        on_connected=calls.on_connected,
        on_disconnected=calls.on_disconnected,
        **options,
    )


@pytest.mark.parametrize(("stable_after", "attempts_after_two_drops"), [(60.0, 2), (0.0, 0)])
async def test_backoff_resets_only_after_a_stable_connection(
    fake_exchange, stable_after, attempts_after_two_drops
):
    calls = _Recorder()
    client = _recorded_client(
        fake_exchange, calls, backoff=Backoff(initial=0.01, cap=0.05), stable_after=stable_after
    )
    task = asyncio.create_task(client.run())
    try:
        for n in (1, 2, 3):
            await fake_exchange.wait_for_connections(n)
            await fake_exchange.wait_for_clients(1)
            if n < 3:
                await fake_exchange.drop_connections()

        async def connected_thrice() -> bool:
            return calls.connected == 3

        await eventually(connected_thrice, what="the third connection")
    finally:
        await client.stop()
        await task
    assert client.backoff.attempt == attempts_after_two_drops
    assert calls.connected == 3
    assert len(calls.disconnects) == 3  # two drops, then the stop


async def test_connection_rotates_before_its_maximum_age_without_a_gap(fake_exchange):
    calls = _Recorder()
    client = _recorded_client(fake_exchange, calls, max_connection_age=0.2)
    task = asyncio.create_task(client.run())
    try:
        await fake_exchange.wait_for_connections(3)
        await fake_exchange.wait_for_clients(1)
        # During a rotation both sockets are open for a moment (duplicates are deduped).
        assert await fake_exchange.broadcast(force_order()) >= 1

        async def received() -> bool:
            return len(calls.frames) >= 1

        await eventually(received, what="a frame on the rotated connection")
        assert calls.disconnects == []
        assert calls.connected == 1
    finally:
        await client.stop()
        await task


async def test_selected_symbols_use_one_combined_stream(worker, fake_exchange, upstream_settings):
    # The running worker listens to everything; a second ingest for two symbols only.
    upstream_settings.LIQUIDATION_SYMBOLS = ["BTCUSDT", "ETHUSDT"]
    ingest = Ingest(channel_layer=get_channel_layer())
    await ingest.start()
    try:
        await fake_exchange.wait_for_clients(2)
        assert ["btcusdt@forceOrder", "ethusdt@forceOrder"] in fake_exchange.subscriptions
        for symbol in ("BTCUSDT", "SOLUSDT", "ETHUSDT"):
            await fake_exchange.broadcast(force_order(symbol=symbol))

        async def two_received() -> bool:
            return ingest.status.events_received == 2

        await eventually(two_received, what="the two subscribed symbols")
    finally:
        await ingest.stop()
        await ingest.aclose()
    assert ingest.status.malformed_dropped == 0


def _embedded_env(fake_exchange, tmp_path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY"}
    }
    env.update(
        ORDERFOX_DATA_DIR=str(tmp_path),
        **exchange_env(
            ws_base_url=fake_exchange.ws_base_url, rest_base_url=fake_exchange.rest_base_url
        ),
    )
    return env


async def _manage(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run manage.py in a process of its own; return its exit code and output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", *args, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, output.decode()


async def _serve_embedded(env: dict[str, str], log_path) -> asyncio.subprocess.Process:
    """Start `make run`'s process (`manage.py serve`: daphne and the worker) on a free port."""
    code, output = await _manage("migrate", "-v0", env=env)
    assert code == 0, output
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with log_path.open("wb") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "manage.py", "serve", "--port", str(port),
            cwd=REPO, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_default_sigint,
        )  # fmt: skip


def _default_sigint() -> None:
    """Give the server Ctrl-C's default action, whoever started the test run.

    A test run started as a background job of a non-interactive shell (`pytest &` in a
    script, `nohup`) has SIGINT ignored, and children inherit that: Python then keeps it
    ignored and Twisted installs no handler, so the SIGINT test's server never stopped.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def _ended(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await process.wait()


async def test_serve_embedded_stores_and_stops_cleanly_on_sigint(fake_exchange, tmp_path):
    """`make run`'s process: daphne + the worker; Ctrl-C stores what arrived and exits 0."""
    log_path = tmp_path / "serve.log"
    serve = await _serve_embedded(_embedded_env(fake_exchange, tmp_path), log_path)
    try:
        await fake_exchange.wait_for_clients(1, timeout=60)
        sent = await fake_exchange.generate(rate=5000, count=5)

        async def some_stored() -> bool:
            with contextlib.closing(sqlite3.connect(tmp_path / "db.sqlite3")) as db:
                return db.execute("SELECT count(*) FROM liquidations_liquidation").fetchone()[0]

        await eventually(some_stored, what="rows from the serve process")
        sent += await fake_exchange.generate(rate=100_000, count=200)
        serve.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(serve.wait(), 60) == 0
    finally:
        await _ended(serve)
    log = log_path.read_text()
    final = re.search(r"Ingest stopped: (\d+) received, (\d+) stored", log)
    assert final, log[-3000:]
    received, stored = map(int, final.groups())
    # Whatever was read off the socket before the signal is stored, nothing twice.
    assert 0 < received == stored <= sent
    with contextlib.closing(sqlite3.connect(tmp_path / "db.sqlite3")) as db:
        assert db.execute("SELECT count(*) FROM liquidations_liquidation").fetchone() == (stored,)
        assert db.execute("SELECT state FROM liquidations_workerstate").fetchone() == ("stopped",)


async def test_commands_from_another_process_stop_and_start_the_embedded_worker(
    fake_exchange, tmp_path
):
    """Without Redis, `liquidations stop|start` reach `serve`'s worker through the database."""
    env = _embedded_env(fake_exchange, tmp_path)
    serve = await _serve_embedded(env, tmp_path / "serve.log")
    try:
        await fake_exchange.wait_for_clients(1, timeout=60)
        code, output = await _manage("liquidations", "stop", env=env)
        assert code == 0, output
        assert "state:              stopped" in output

        async def disconnected() -> bool:
            return fake_exchange.connections == 0

        await eventually(disconnected, what="the worker's upstream socket to close")
        code, output = await _manage("liquidations", "stop", env=env)  # stopped already
        assert code == 0, output
        code, output = await _manage("liquidations", "start", env=env)
        assert code == 0, output
        assert re.search(r"state: +(connecting|streaming)", output), output
        await fake_exchange.wait_for_clients(1, timeout=30)
        code, output = await _manage("liquidations", "status", "--timeout", "0.2", env=env)
        assert code == 0 and "last heartbeat from the database" in output, output
    finally:
        await _ended(serve)


async def test_a_request_no_worker_takes_is_withdrawn(fake_exchange, tmp_path):
    # Nothing serves: the command gives up, and a `make run` started later must not stop.
    env = _embedded_env(fake_exchange, tmp_path)
    code, output = await _manage("migrate", "-v0", env=env)
    assert code == 0, output
    code, output = await _manage("liquidations", "stop", "--timeout", "1.5", env=env)
    assert code == 1
    assert "did not take the request" in output and "`make run`" in output
    with contextlib.closing(sqlite3.connect(tmp_path / "db.sqlite3")) as db:
        assert db.execute("SELECT requested FROM liquidations_workerstate").fetchall() == [("",)]


async def test_server_pings_are_answered():
    from liquidations.devtools.fake_exchange import FakeExchange

    async with FakeExchange(ping_interval=0.05, pong_timeout=1.0) as fx:
        calls = _Recorder()
        client = _recorded_client(fx, calls)
        task = asyncio.create_task(client.run())
        try:
            await fx.wait_for_clients(1)

            async def pong_seen() -> bool:
                return any(latency > 0 for latency in fx.pong_latencies)

            await eventually(pong_seen, what="a pong to the server's ping")
            assert calls.disconnects == []
        finally:
            await client.stop()
            await task


async def test_a_flood_past_the_backlog_bound_is_stored_whole_without_a_reconnect(
    upstream_settings, fake_exchange, channel_layer, monkeypatch, caplog
):
    from liquidations.ingest import writer as writer_module

    # A writer far slower than the flood (a database taking 0.1 s per 40-event batch) and
    # a keepalive far shorter than the flood: reads are held for seconds while the
    # exchange keeps sending.
    monkeypatch.setattr(writer_module, "MAX_BATCH", 40)
    real_store = writer_module.store_isolating

    def slow_store(batch, **kwargs):
        time.sleep(0.1)
        return real_store(batch, **kwargs)

    monkeypatch.setattr(writer_module, "store_isolating", slow_store)
    upstream_settings.BINANCE_PING_INTERVAL_SECONDS = 0.2
    upstream_settings.BINANCE_PING_TIMEOUT_SECONDS = 0.3
    bound = 12_000  # about 40 frames
    ingest = Ingest(channel_layer=channel_layer, max_backlog_bytes=bound)
    await ingest.start()
    peak = 0

    async def watch_backlog() -> None:
        nonlocal peak
        while True:
            peak = max(peak, ingest.venues["binance"].queue.size)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch_backlog())
    try:
        await fake_exchange.wait_for_clients(1)
        sent = await fake_exchange.generate(rate=100_000, count=2_000, malformed_every=100)
        await eventually(stored_at_least(sent), timeout=60, what="the whole flood stored")
    finally:
        watcher.cancel()
        await ingest.stop()
        await ingest.aclose()
    assert await stored_count() == sent == ingest.status.events_stored
    assert ingest.status.malformed_dropped == fake_exchange.malformed_sent == 20
    # One connection throughout: no keepalive timeout while the reader held back.
    assert ingest.status.reconnects == 0
    assert fake_exchange.accepted_connections == 1
    assert await sync_to_async(ConnectionGap.objects.count)() == 0
    # The backlog reached its bound (reads were held) and never went past one more frame.
    assert bound <= peak < bound + 1_000
    assert "its reads wait for the writer" in caplog.text


async def test_frames_keep_the_connection_alive_when_pongs_do_not_come(fake_exchange):
    calls = _Recorder()
    client = _recorded_client(fake_exchange, calls, ping_interval=0.1, ping_timeout=0.1)
    task = asyncio.create_task(client.run())
    try:
        await fake_exchange.wait_for_clients(1)
        # The exchange still sends but never reads our pings: only frames prove it alive.
        fake_exchange.stall_connections()
        sent = await fake_exchange.generate(rate=50, duration=1.5)

        async def all_received() -> bool:
            return len(calls.frames) == sent

        await eventually(all_received, what="every frame")
        assert sent > 50
        assert calls.disconnects == []
        assert fake_exchange.accepted_connections == 1
        await fake_exchange.drop_connections()  # a stalled peer would not answer a close
    finally:
        await client.stop()
        await task


async def test_a_silent_connection_that_does_not_answer_pings_is_failed_and_reconnected(
    fake_exchange,
):
    calls = _Recorder()
    client = _recorded_client(
        fake_exchange,
        calls,
        backoff=Backoff(initial=0.01, cap=0.05),
        ping_interval=0.2,
        ping_timeout=0.2,
    )
    task = asyncio.create_task(client.run())
    try:
        await fake_exchange.wait_for_clients(1)
        fake_exchange.stall_connections()  # hung: no frames, no pongs
        await fake_exchange.wait_for_connections(2)
        assert len(calls.disconnects) == 1
        assert calls.disconnects[0].startswith("keepalive ping timeout")
        # The stalled side has not noticed yet; the new connection gets the frame.
        await fake_exchange.broadcast(force_order())

        async def received() -> bool:
            return len(calls.frames) == 1

        await eventually(received, what="a frame on the new connection")
    finally:
        await client.stop()
        await task


@contextlib.contextmanager
def database_write_locked():
    """Hold SQLite's write lock from another connection: the worker's writes wait."""
    import sqlite3

    settings_dict = connections["default"].settings_dict
    if settings_dict["ENGINE"] != "django.db.backends.sqlite3":
        pytest.skip("locks the SQLite file (embedded mode)")
    lock = sqlite3.connect(settings_dict["NAME"], isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        lock.execute("ROLLBACK")
        lock.close()


async def test_a_database_outage_past_the_backlog_bound_holds_reads_and_loses_nothing(
    upstream_settings, fake_exchange, channel_layer
):
    upstream_settings.BINANCE_PING_INTERVAL_SECONDS = 0.2
    upstream_settings.BINANCE_PING_TIMEOUT_SECONDS = 0.3
    bound = 6_000  # about 20 frames
    ingest = Ingest(channel_layer=channel_layer, max_backlog_bytes=bound)
    await ingest.start()
    try:
        await fake_exchange.wait_for_clients(1)

        async def reads_held() -> bool:
            return ingest.venues["binance"].queue.size >= bound

        with database_write_locked():
            sent = await fake_exchange.generate(rate=2_000, count=300)
            await eventually(reads_held, what="the backlog to reach its bound")
            # The outage goes on for many keepalive intervals with reads held.
            await asyncio.sleep(1.5)
            assert ingest.venues["binance"].queue.size < bound + 1_000
        await eventually(stored_at_least(sent), timeout=30, what="everything after the outage")
    finally:
        await ingest.stop()
        await ingest.aclose()
    assert await stored_count() == sent == ingest.status.events_stored
    assert ingest.status.reconnects == 0
    assert fake_exchange.accepted_connections == 1


async def test_backlog_is_full_at_its_bound_and_drained_at_half():
    backlog = Backlog(max_bytes=100)
    assert [backlog.put(b"x" * 30) for _ in range(4)] == [False, False, False, True]
    drained = asyncio.ensure_future(backlog.drained())
    assert backlog.take_nowait(1) == [b"x" * 30]  # 90 bytes: still above half
    await asyncio.sleep(0)
    assert not drained.done()
    assert backlog.take_nowait(1) == [b"x" * 30]  # 60 bytes
    await asyncio.sleep(0)
    assert not drained.done()
    assert backlog.take_nowait(1) == [b"x" * 30]  # 30 bytes: at most half
    await asyncio.wait_for(drained, 1)
    backlog.close()
    assert await backlog.take(10) == [b"x" * 30]  # closed: what is left, then nothing
    assert await backlog.take(10) == []


async def test_stopping_names_a_task_that_ignores_its_cancellation_and_does_not_hang(caplog):
    from liquidations.ingest.tasks import wait_ended as _wait_ended

    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    async def polite() -> None:
        await asyncio.sleep(3600)

    tasks = [
        asyncio.create_task(stubborn(), name="stubborn"),
        asyncio.create_task(polite(), name="polite"),
    ]
    await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    with caplog.at_level(logging.ERROR, logger="liquidations.ingest"):
        await asyncio.wait_for(_wait_ended(tasks, timeout=0.2), timeout=5)
    assert "Task stubborn is still running 0.2 s after it was stopped" in caplog.text
    assert "polite" not in caplog.text and tasks[1].cancelled()
    release.set()
    await tasks[0]
