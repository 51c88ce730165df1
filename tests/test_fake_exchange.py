from __future__ import annotations

import asyncio
import base64
import random
from collections import Counter

from websockets.asyncio.client import connect

from liquidations.devtools.fake_exchange import FakeExchange
from liquidations.upstream.binance import parse_payload


def test_synthetic_events_parse_and_keep_one_per_symbol_per_second():
    exchange = FakeExchange()
    trading = sum(1 for s in exchange.symbols if s.status == "TRADING" and s.weight > 0)
    events = [parse_payload(exchange.synthetic_event()) for _ in range(trading)]
    # Like Binance: no symbol publishes twice in one second while others are idle (with
    # as many events as symbols, some symbol is always idle).
    per_second = Counter((e.symbol, e.trade_time_ms // 1000) for e in events)
    assert max(per_second.values()) == 1
    assert len({e.trade_time_ms for e in events}) == len(events)


async def test_sending_waits_for_a_client_that_does_not_read_instead_of_buffering():
    # Random text: the connection compresses frames (permessage-deflate).
    padding = base64.b64encode(random.Random(1).randbytes(45_000)).decode()
    frame = '{"e":"padding","x":"' + padding + '"}'
    async with FakeExchange() as fx:
        # max_queue=1: after one frame the client stops reading its socket.
        async with connect(f"{fx.ws_base_url}/ws/!forceOrder@arr", max_queue=1, close_timeout=1):
            await fx.wait_for_clients(1)

            async def flood() -> None:
                for _ in range(2_000):  # 90 MB compressed: more than kernel buffers hold
                    await fx.broadcast(frame)

            sending = asyncio.create_task(flood())
            await asyncio.sleep(2)
            try:
                assert not sending.done(), "the exchange sent 90 MB to a client not reading"
                # What the socket has not taken stays at about one frame plus the limit.
                assert max(fx.write_buffer_sizes) < 2**17
            finally:
                sending.cancel()
