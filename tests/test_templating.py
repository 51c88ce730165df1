"""The live row's compiled render: byte for byte what Django renders from _row.html."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.template import Context, Engine
from django.template.defaultfilters import date as date_filter
from django.template.defaultfilters import floatformat, urlencode
from django.template.loader import get_template, render_to_string
from django.test import override_settings
from django.utils import timezone
from django.utils.safestring import mark_safe

from liquidations.live.templating import NotCompilable, compile_substitution, substitution_renderer
from liquidations.selectors.feed import LiquidationRow, liquidation_rows
from liquidations.selectors.symbols import SymbolInfo
from liquidations.services.liquidations import StoredLiquidation

ROW = "liquidations/_row.html"
HISTORY_ROW = "liquidations/_history_row.html"
LISTED = {
    "BTCUSDT": SymbolInfo("BTC", 3, 1),
    "1000PEPEUSDT": SymbolInfo("1000PEPE", 0, 7),
    "DOGEUSDT": SymbolInfo("DOGE", 0, 5),
    "ODDUSDT": SymbolInfo('<b>&"O\'DD"</b>', 8, 2),  # hostile text in the listing
    "NULUSDT": SymbolInfo("NU\x00L", None, None),  # a value holding the join separator
}
SYMBOLS = [
    *LISTED,
    *("ETHUSDT", "B001USDT", "USDT", "X", "9", "ABCUSDC", "ZZZBUSD", "A" * 30),
    *("币安人生USDT", "<b>&X</b>", "a/b?c#d"),  # any printable name is a symbol
]


def random_liquidation(rnd: random.Random, pk: int) -> StoredLiquidation:
    ms = rnd.choice([0, 1, 999, rnd.randrange(1000)])
    moment = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(
        seconds=rnd.randrange(200 * 365 * 86_400), milliseconds=ms
    )
    quantity = Decimal(rnd.randrange(1, 10 ** rnd.randrange(1, 11))).scaleb(-rnd.randrange(0, 9))
    price = Decimal(rnd.randrange(1, 10 ** rnd.randrange(1, 10))).scaleb(-rnd.randrange(0, 9))
    usd = rnd.choice(
        [
            (quantity * price).quantize(Decimal("0.00000001")),
            Decimal("99999.99999999"),
            Decimal("100000.00000000"),
            Decimal("999999.99999999"),
            Decimal("1000000.00000000"),
            Decimal("0E-8"),
            Decimal("0.5"),
            Decimal("1234567890123.5"),
        ]
    )
    return StoredLiquidation(
        pk=rnd.choice([1, 999, 1000, 1234567, rnd.randrange(1, 2**62), pk]),
        venue=rnd.choice(["binance", "bybit", "okx", "<i>x</i>"]),
        symbol=rnd.choice(SYMBOLS),
        side=rnd.choice(["BUY", "SELL"]),
        trade_time=moment,
        filled_quantity=rnd.choice([quantity, Decimal("1E+3"), Decimal("0.0100")]),
        average_price=rnd.choice([price, Decimal("87010.500"), Decimal("0.00000001")]),
        notional_usd=usd,
    )


@pytest.fixture(autouse=True)
def _listing(monkeypatch):
    """The symbols' display info without a database."""
    monkeypatch.setattr("liquidations.selectors.feed.symbol_info_map", lambda **kwargs: LISTED)


@pytest.fixture
def rows() -> list[LiquidationRow]:
    rnd = random.Random(5)
    return liquidation_rows(liquidations=[random_liquidation(rnd, i) for i in range(3000)])


def compiled_row():
    return compile_substitution(get_template(ROW).template, var="row", cls=LiquidationRow)


def test_the_row_partial_compiles():
    render = compiled_row()
    assert callable(render)


def test_compiled_render_is_byte_identical_to_django(rows):
    for partial in (ROW, HISTORY_ROW):
        render = compile_substitution(get_template(partial).template, var="row", cls=LiquidationRow)
        for row in rows:
            assert render(row) == render_to_string(partial, {"row": row})


def test_history_rows_show_what_their_old_filters_showed(rows):
    """_history_row.html formatted the time and amount with Django's filters."""
    old = Engine().from_string(
        "{{ row.trade_time|date:'Y-m-d H:i:s.u'|slice:':23' }} {{ row.usd|floatformat:'0g' }} "
        "{% if row.is_long_liquidated %}liq-long{% else %}liq-short{% endif %}"
        "{% if row.tier %} liq-{{ row.tier }}{% endif %}"
    )
    for row in rows:
        local = timezone.localtime(row.trade_time)
        shown = old.render(
            Context(
                {
                    "row": {
                        **_fields(row),
                        "trade_time": local,
                        "is_long_liquidated": row.side == "SELL",
                        "tier": row.tier,
                    }
                }
            )
        )
        assert shown == f"{row.trade_time_title} {row.usd_display} {row.side_class}"


def test_identical_with_thousand_separators_and_another_time_zone(rows):
    render = compiled_row()
    with override_settings(USE_THOUSAND_SEPARATOR=True):
        for row in rows[:300]:
            assert render(row) == render_to_string(ROW, {"row": row})
        assert 'data-id="1,234,567"' in render(
            LiquidationRow(**{**_fields(rows[0]), "id": 1234567})
        )
    with timezone.override("Asia/Kathmandu"):
        shifted = liquidation_rows(liquidations=[_back(row) for row in rows[:300]])
    for row in shifted:
        assert row.trade_time_iso.endswith("+05:45")
        assert render(row) == render_to_string(ROW, {"row": row})


def test_values_that_are_not_plain_strings_render_as_django_renders_them(rows):
    render = compiled_row()
    row = rows[0]
    odd = [
        {"base_asset": mark_safe("<i>BTC</i>")},  # SafeString: not escaped
        {"quantity": Decimal("12.50")},  # localized by Django
        {"side_label": None},
        {"id": True},
        {"symbol": "A\x00B"},
    ]
    for change in odd:
        changed = LiquidationRow(**{**_fields(row), **change})
        assert render(changed) == render_to_string(ROW, {"row": changed})


def test_row_strings_are_what_the_django_filters_gave(rows):
    """The values moved out of _row.html show what its tags and filters used to show."""
    plain = Engine().from_string("{{ usd }}")
    for row in rows:
        local = timezone.localtime(row.trade_time)
        assert row.trade_time_iso == date_filter(local, "c")
        assert row.trade_time_title == date_filter(local, "Y-m-d H:i:s.u")[:23]
        assert row.trade_time_clock == date_filter(local, "H:i:s")
        assert row.usd_display == floatformat(row.usd, "0g")
        assert row.symbol_path == urlencode(row.symbol, "")
        side = "liq-long" if row.is_long_liquidated else "liq-short"
        assert row.side_class == (f"{side} liq-{row.tier}" if row.tier else side)
        assert row.usd_value == plain.render(Context({"usd": row.usd}))  # was {{ row.usd }}


@pytest.mark.parametrize(
    "source",
    [
        "{% if row.tier %}x{% endif %}",
        "{{ row.symbol|lower }}",
        "{{ row.no_such_name }}",
        "{{ row }}",
        "{{ other.symbol }}",
        "{{ row.symbol.lower }}",
        "{{ 'text' }}",
        "{% autoescape off %}{{ row.symbol }}{% endautoescape %}",
    ],
)
def test_anything_but_plain_substitution_is_refused(source):
    with pytest.raises(NotCompilable):
        compile_substitution(Engine().from_string(source), var="row", cls=LiquidationRow)


def test_an_engine_without_autoescape_is_refused():
    template = Engine(autoescape=False).from_string("{{ row.symbol }}")
    with pytest.raises(NotCompilable, match="autoescape"):
        compile_substitution(template, var="row", cls=LiquidationRow)


def test_braces_in_the_text_are_kept():
    template = Engine().from_string("{ {{ row.symbol }} }} {x}")
    render = compile_substitution(template, var="row", cls=LiquidationRow)
    assert render(_sample()) == "{ BTCUSDT }} {x}"


def test_a_template_that_does_not_compile_renders_through_django(caplog):
    render = substitution_renderer("liquidations/_stats.html", var="row", cls=LiquidationRow)
    row = _sample()
    assert render(row) == render_to_string("liquidations/_stats.html", {"row": row})
    assert "renders through Django's engine" in caplog.text


def _fields(row: LiquidationRow) -> dict:
    return {name: getattr(row, name) for name in LiquidationRow.__dataclass_fields__}


def _back(row: LiquidationRow) -> StoredLiquidation:
    quantity = Decimal(row.quantity.replace(",", ""))
    price = Decimal(row.average_price.replace(",", ""))
    return StoredLiquidation(
        row.id, row.venue, row.symbol, row.side, row.trade_time, quantity, price, row.usd
    )


def _sample() -> LiquidationRow:
    stored = StoredLiquidation(
        7,
        "binance",
        "BTCUSDT",
        "SELL",
        datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        Decimal("12.5"),
        Decimal("100000"),
        Decimal("1250000.00000000"),
    )
    return liquidation_rows(liquidations=[stored])[0]
