"""Faults that repeat are logged a few times, then summarised; the counters stay exact."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest
from channels.db import database_sync_to_async as sync_to_async
from channels.layers import get_channel_layer

from liquidations.ingest.pipeline import Ingest
from liquidations.logs import RateLimitedLog, RepeatFilter
from liquidations.models import Liquidation
from tests.factories import force_order


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _capture(name: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    logger = logging.getLogger(f"tests.logs.{name}")
    logger.handlers = [logging.StreamHandler(stream)]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_a_flood_is_logged_three_times_then_summarised_by_reason():
    logger, stream = _capture("flood")
    clock = Clock()
    log = RateLimitedLog(logger, burst=3, interval=60, clock=clock)
    for n in range(1000):
        log.log(logging.WARNING, "bad frames", "Dropped frame %d", n, reason=f"r{n % 2}")
        clock.now += 0.01  # 10 s in all: one interval
    lines = stream.getvalue().splitlines()
    assert lines == [
        "Dropped frame 0",
        "Dropped frame 1",
        "Dropped frame 2",
        "bad frames: further ones in the next 60 s are counted, not logged",
    ]
    clock.now += 60
    log.flush()
    summary = stream.getvalue().splitlines()[-1]
    assert summary.startswith("bad frames: 997 more in the last 70 s")
    assert "r1 ×499" in summary and "r0 ×498" in summary
    assert log.last["bad frames"].message == "Dropped frame 999"
    log.recovered("bad frames", "Frames are fine again")
    assert stream.getvalue().splitlines()[-1] == "Frames are fine again (after 1000 failures)"
    log.recovered("bad frames", "said once only")
    assert "said once only" not in stream.getvalue()


def test_repeat_filter_limits_other_loggers_by_template():
    logger, stream = _capture("filtered")
    clock = Clock()
    logger.handlers[0].addFilter(RepeatFilter(burst=2, interval=60, clock=clock))
    for n in range(50):
        logger.warning("Unexpected exception in receive task %d", n)
        logger.info("an ordinary line %d", n)
    lines = stream.getvalue().splitlines()
    assert [line for line in lines if "Unexpected" in line] == [
        "Unexpected exception in receive task 0",
        "Unexpected exception in receive task 1",
    ]
    assert len([line for line in lines if "ordinary" in line]) == 50
    clock.now += 61
    logger.warning("Unexpected exception in receive task %d", 99)
    assert stream.getvalue().splitlines()[-1] == (
        "Unexpected exception in receive task 99"
        " [48 more like this in the last 60 s were not logged]"
    )


@pytest.mark.django_db(transaction=True)
async def test_a_flood_of_malformed_frames_is_counted_exactly_and_logged_briefly(
    upstream_settings, fake_exchange, caplog
):
    ingest = Ingest(channel_layer=get_channel_layer())
    await ingest.start()
    try:
        await fake_exchange.wait_for_clients(1)
        with caplog.at_level(logging.INFO, logger="liquidations"):
            for n in range(300):
                await fake_exchange.broadcast('{"e":"forceOrder","o":' + "x" * (n % 7))
            await fake_exchange.broadcast(force_order())
            async with asyncio.timeout(20):
                while await sync_to_async(Liquidation.objects.count)() < 1:
                    await asyncio.sleep(0.05)
        assert ingest.status.malformed_dropped == 300
        lines = [r for r in caplog.records if r.name.startswith("liquidations.ingest")]
        warnings = [r for r in lines if r.levelno >= logging.WARNING]
        assert 3 <= len(warnings) <= 5, [r.getMessage() for r in warnings]
        assert (
            "not JSON" in ingest.status.as_message()["last_errors"]["malformed frames"]["message"]
        )
    finally:
        await ingest.stop()
        await ingest.aclose()
