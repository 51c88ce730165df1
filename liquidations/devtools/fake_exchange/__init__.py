"""A loopback stand-in for the exchanges, for tests and `make demo` (one module per protocol)."""

from .binance import ALL_MARKET_STREAM, MALFORMED_FRAMES
from .server import FakeExchange
from .symbols import SYMBOLS, FakeSymbol

__all__ = ["ALL_MARKET_STREAM", "MALFORMED_FRAMES", "SYMBOLS", "FakeExchange", "FakeSymbol"]
