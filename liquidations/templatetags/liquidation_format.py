"""Figures for narrow screens: $33,788,348 shown as $33.8M (the exact one in a title)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import template

register = template.Library()

UNITS = (
    (Decimal(10) ** 12, "T"),
    (Decimal(10) ** 9, "B"),
    (Decimal(10) ** 6, "M"),
    (Decimal(1000), "k"),
)


@register.filter
def compact(value: Decimal | float | int | str) -> str:
    """Return a number in three significant figures or fewer and a unit: 33.8M, 950k, 120."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return ""
    for size, unit in UNITS:
        # 999,960 reads 1.0M, not 1000k.
        if abs(amount) >= size * Decimal("0.9995"):
            scaled = amount / size
            return (
                f"{scaled:.1f}{unit}" if abs(scaled) < Decimal("99.95") else f"{scaled:.0f}{unit}"
            )
    return f"{amount:.0f}"
