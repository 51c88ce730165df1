"""The fake exchange's contracts: a project-owned list of realistic USD-M symbols."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FakeSymbol:
    """One contract of the fake exchange: listing data and a reference price."""

    symbol: str
    base_asset: str
    quote_asset: str
    price: str
    price_precision: int
    quantity_precision: int
    tick_size: str
    step_size: str
    weight: float = 1.0
    status: str = "TRADING"

    def exchange_info(self) -> dict[str, Any]:
        """Return the symbol as /fapi/v1/exchangeInfo lists it."""
        return {
            "symbol": self.symbol,
            "pair": self.symbol,
            "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000,
            "onboardDate": 1569398400000,
            "status": self.status,
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "baseAsset": self.base_asset,
            "quoteAsset": self.quote_asset,
            "marginAsset": self.quote_asset,
            "pricePrecision": self.price_precision,
            "quantityPrecision": self.quantity_precision,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": [],
            "triggerProtect": "0.0500",
            "liquidationFee": "0.012500",
            "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": self.tick_size,
                    "maxPrice": "4529764",
                    "tickSize": self.tick_size,
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": self.step_size,
                    "maxQty": "1000000000",
                    "stepSize": self.step_size,
                },
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": self.step_size,
                    "maxQty": "1000000000",
                    "stepSize": self.step_size,
                },
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MIN_NOTIONAL", "notional": "5"},
                {
                    "filterType": "PERCENT_PRICE",
                    "multiplierUp": "1.0500",
                    "multiplierDown": "0.9500",
                    "multiplierDecimal": "4",
                },
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        }


def _s(
    symbol: str,
    base: str,
    quote: str,
    price: str,
    pp: int,
    qp: int,
    tick: str,
    step: str,
    weight: float = 1.0,
    status: str = "TRADING",
) -> FakeSymbol:
    return FakeSymbol(symbol, base, quote, price, pp, qp, tick, step, weight, status)


# Prices and precisions modelled on the real listing in late 2025 (not live data).
SYMBOLS: tuple[FakeSymbol, ...] = (
    _s("BTCUSDT", "BTC", "USDT", "87350.10", 2, 3, "0.10", "0.001", 14),
    _s("ETHUSDT", "ETH", "USDT", "2948.37", 2, 3, "0.01", "0.001", 10),
    _s("SOLUSDT", "SOL", "USDT", "124.870", 4, 2, "0.0100", "0.01", 6),
    _s("XRPUSDT", "XRP", "USDT", "1.8731", 4, 1, "0.0001", "0.1", 5),
    _s("DOGEUSDT", "DOGE", "USDT", "0.128470", 6, 0, "0.000010", "1", 4),
    _s("BNBUSDT", "BNB", "USDT", "842.150", 3, 2, "0.010", "0.01", 3),
    _s("1000PEPEUSDT", "1000PEPE", "USDT", "0.0040512", 7, 0, "0.0000001", "1", 4),
    _s("1000SHIBUSDT", "1000SHIB", "USDT", "0.007312", 6, 0, "0.000001", "1", 1.5),
    _s("1000BONKUSDT", "1000BONK", "USDT", "0.0097210", 7, 0, "0.0000010", "1", 1.5),
    _s("1000000MOGUSDT", "1000000MOG", "USDT", "0.2581000", 7, 1, "0.0000100", "0.1", 0.5),
    _s("ADAUSDT", "ADA", "USDT", "0.36450", 5, 0, "0.00010", "1", 2),
    _s("AVAXUSDT", "AVAX", "USDT", "12.1840", 4, 0, "0.0010", "1", 1.5),
    _s("LINKUSDT", "LINK", "USDT", "12.384", 3, 2, "0.001", "0.01", 1.5),
    _s("SUIUSDT", "SUI", "USDT", "1.426100", 6, 1, "0.000100", "0.1", 2),
    _s("LTCUSDT", "LTC", "USDT", "77.35", 2, 3, "0.01", "0.001", 1),
    _s("WIFUSDT", "WIF", "USDT", "0.355100", 7, 1, "0.000100", "0.1", 1),
    _s("ENAUSDT", "ENA", "USDT", "0.2231000", 7, 0, "0.0001000", "1", 1.5),
    _s("HYPEUSDT", "HYPE", "USDT", "24.58100", 5, 2, "0.00100", "0.01", 2),
    _s("TRUMPUSDT", "TRUMP", "USDT", "5.106", 3, 1, "0.001", "0.1", 1),
    _s("FARTCOINUSDT", "FARTCOIN", "USDT", "0.2927000", 7, 1, "0.0001000", "0.1", 1.5),
    _s("ZECUSDT", "ZEC", "USDT", "515.06", 2, 3, "0.01", "0.001", 2),
    _s("ONTUSDT", "ONT", "USDT", "0.0706", 4, 1, "0.0001", "0.1", 0.5),
    _s("MEUSDT", "ME", "USDT", "0.2139000", 7, 1, "0.0001000", "0.1", 0.5),
    _s("AAVEUSDT", "AAVE", "USDT", "151.240", 3, 1, "0.010", "0.1", 1),
    _s("DOTUSDT", "DOT", "USDT", "1.784", 3, 1, "0.001", "0.1", 0.7),
    _s("NEARUSDT", "NEAR", "USDT", "1.5220", 4, 0, "0.0010", "1", 0.7),
    _s("BTCUSDC", "BTC", "USDC", "87345.6", 1, 3, "0.1", "0.001", 2),
    _s("ETHUSDC", "ETH", "USDC", "2948.12", 2, 3, "0.01", "0.001", 1.5),
    _s("SOLUSDC", "SOL", "USDC", "124.8600", 4, 2, "0.0100", "0.01", 0.8),
    _s("XRPUSDC", "XRP", "USDC", "1.8730", 4, 1, "0.0001", "0.1", 0.5),
    _s("1000PEPEUSDC", "1000PEPE", "USDC", "0.0040510", 7, 0, "0.0000001", "1", 0.4),
    # Listed but not trading: present in exchangeInfo, never liquidated.
    _s("LUNA2USDT", "LUNA2", "USDT", "0.0843", 4, 0, "0.0001", "1", 0, "SETTLING"),
)
