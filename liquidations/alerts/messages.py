"""What an alert says: one summary line, and a line per liquidation (the first few).

Telegram reads the text as HTML and Discord as Markdown: every piece of text from a
rule or a row goes through the destination's escape, so a rule named "<b>*x*</b>" shows
as typed and a symbol cannot ping @everyone.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

SIDE_WORDS = {"SELL": "long liquidated", "BUY": "short liquidated"}
MAX_LINES = 10
_DISCORD_SPECIAL = re.compile(r"([\\*_~`|>#\-\[\]()<@:])")


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """One delivery's content, as every destination reads it."""

    delivery_id: int
    rule_name: str
    items: Sequence[dict[str, Any]]
    summary: dict[str, Any] | None  # a cascade: seconds, count, usd
    count: int
    total_usd: Decimal


def money(usd: Decimal) -> str:
    """$950, $12.3k, $4.1M, $1.2B."""
    for size, suffix in ((Decimal(10) ** 9, "B"), (Decimal(10) ** 6, "M"), (Decimal(1000), "k")):
        if usd >= size:
            return f"${usd / size:.1f}{suffix}"
    return f"${usd:.0f}"


def _largest(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return max(items, key=lambda item: Decimal(item["usd"]))


def headline(message: AlertMessage) -> str:
    """The summary: "14 liquidations, $23.4M, largest ETHUSDT $4.1M" (plain text)."""
    if message.summary:
        big = _largest(message.items)
        return (
            f"cascade: {message.summary['count']} liquidations, "
            f"{money(Decimal(message.summary['usd']))} within {message.summary['seconds']} s, "
            f"largest {big['symbol']} {money(Decimal(big['usd']))}"
        )
    if message.count == 1:
        return item_line(message.items[0])
    big = _largest(message.items)
    return (
        f"{message.count} liquidations, {money(message.total_usd)}, "
        f"largest {big['symbol']} {money(Decimal(big['usd']))}"
    )


def item_line(item: dict[str, Any]) -> str:
    side = SIDE_WORDS.get(item["side"], item["side"])
    return (
        f"{item['symbol']} {side} {money(Decimal(item['usd']))} "
        f"({item['quantity']} @ {item['price']}, {item['venue']})"
    )


def _lines(message: AlertMessage, escape: Callable[[str], str]) -> list[str]:
    lines = [escape(f"OrderFox · {message.rule_name}: {headline(message)}")]
    if message.count > 1 or message.summary:
        shown = list(message.items)[:MAX_LINES]
        lines += [escape(item_line(item)) for item in shown]
        if message.count > len(shown):
            lines.append(escape(f"… and {message.count - len(shown)} more"))
    return lines


def telegram_escape(text: str) -> str:
    """Escape what Telegram's HTML parse mode interprets (&, <, >)."""
    return html.escape(text, quote=False)


def discord_escape(text: str) -> str:
    """Escape what Discord's Markdown interprets (and mentions, emoji, links)."""
    return _DISCORD_SPECIAL.sub(r"\\\1", text)


def _join(lines: list[str], limit: int) -> str:
    """Whole lines up to limit characters (never a cut escape or tag)."""
    text = lines[0]
    for line in lines[1:]:
        if len(text) + 1 + len(line) > limit:
            break
        text += "\n" + line
    return text


def telegram_text(message: AlertMessage) -> str:
    lines = _lines(message, telegram_escape)
    lines[0] = f"<b>{lines[0]}</b>"
    return _join(lines, 4000)  # Telegram's limit is 4096


def discord_text(message: AlertMessage) -> str:
    lines = _lines(message, discord_escape)
    lines[0] = f"**{lines[0]}**"
    return _join(lines, 1900)  # Discord's limit is 2000
