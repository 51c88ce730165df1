"""Compact amounts for narrow stats cards: $33,788,348 reads $33.8M on a phone."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.template import Context, Template


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (Decimal("0"), "0"),
        (Decimal("999.4"), "999"),
        (Decimal("999.6"), "1.0k"),
        (Decimal("12345.67"), "12.3k"),
        (Decimal("99951"), "100k"),
        (Decimal("999960"), "1.0M"),  # not 1000k
        (Decimal("33788348.12"), "33.8M"),
        (Decimal("1234567890"), "1.2B"),
        (2.5e12, "2.5T"),
        ("not a number", ""),
    ],
)
def test_compact(value, shown):
    template = Template("{% load liquidation_format %}{{ value|compact }}")
    assert template.render(Context({"value": value})) == shown
