from __future__ import annotations

from collections import Counter

from liquidations.binance import parse_payload
from liquidations.fake_exchange import FakeExchange


def test_synthetic_events_parse_and_keep_one_per_symbol_per_second():
    exchange = FakeExchange()
    trading = sum(1 for s in exchange.symbols if s.status == "TRADING" and s.weight > 0)
    events = [parse_payload(exchange.synthetic_event()) for _ in range(trading)]
    # Like Binance: no symbol publishes twice in one second while others are idle (with
    # as many events as symbols, some symbol is always idle).
    per_second = Counter((e.symbol, e.trade_time_ms // 1000) for e in events)
    assert max(per_second.values()) == 1
    assert len({e.trade_time_ms for e in events}) == len(events)
