"""`alerts add|list|remove`: manage alert rules from scripts (the admin does the same).

Secrets (webhook secret, Telegram token, Discord webhook) are taken, never printed.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management import BaseCommand, CommandError, CommandParser

from liquidations.alert_models import AlertRule
from liquidations.alerts.destinations import target_label
from liquidations.selectors.alerts import alert_rules_list
from liquidations.services.alert_rules import alert_rule_create, alert_rule_remove

SIDES = {"": "", "long": "SELL", "short": "BUY", "sell": "SELL", "buy": "BUY"}


def usd(value: str) -> Decimal:
    try:
        amount = Decimal(value.replace(",", "").replace("_", ""))
    except InvalidOperation:
        raise ValueError(value) from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(value)
    return amount


class Command(BaseCommand):
    help = "Add, list or remove alert rules (see docs/alerts.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="Add a rule; it applies to rows stored from now on.")
        add.add_argument("--name", default="", help="Unique name (default: rule-<n>).")
        add.add_argument("--min-usd", type=usd, default=Decimal(0), help="Least USD per row.")
        add.add_argument("--symbols", default="", help="Comma-separated; default: all.")
        add.add_argument("--venues", default="", help="Comma-separated; default: all.")
        add.add_argument("--side", choices=sorted(SIDES), default="", help="long = SELL orders.")
        add.add_argument("--cascade-seconds", type=int, default=None)
        add.add_argument("--cascade-usd", type=usd, default=None)
        add.add_argument("--cooldown", type=int, default=0, help="Seconds (by trade time).")
        add.add_argument("--webhook", default="", help="Webhook URL (with --secret).")
        add.add_argument("--secret", default="", help="The webhook's HMAC-SHA256 secret.")
        add.add_argument("--telegram-token", default="")
        add.add_argument("--telegram-chat", default="")
        add.add_argument("--discord", default="", help="Discord webhook URL.")
        actions.add_parser("list", help="List the rules (without secrets).")
        remove = actions.add_parser("remove", help="Remove a rule, its hits and its log.")
        remove.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "add":
            self._add(options)
        elif action == "list":
            for rule in alert_rules_list():
                self.stdout.write(describe(rule))
        elif not alert_rule_remove(name=options["name"]):
            raise CommandError(f"No rule named {options['name']!r}.")
        else:
            self.stdout.write(f"Removed {options['name']}.")

    def _add(self, options: dict[str, Any]) -> None:
        destinations = {
            "webhook": bool(options["webhook"]),
            "telegram": bool(options["telegram_token"] or options["telegram_chat"]),
            "discord": bool(options["discord"]),
        }
        chosen = [name for name, given in destinations.items() if given]
        if len(chosen) != 1:
            raise CommandError("Give exactly one of --webhook, --telegram-token/-chat, --discord.")
        try:
            rule = alert_rule_create(
                name=options["name"],
                destination=chosen[0],
                min_usd=options["min_usd"],
                symbols=options["symbols"],
                venues=options["venues"],
                side=SIDES[options["side"]],
                cascade_seconds=options["cascade_seconds"],
                cascade_usd=options["cascade_usd"],
                cooldown_seconds=options["cooldown"],
                webhook_url=options["webhook"],
                webhook_secret=options["secret"],
                telegram_token=options["telegram_token"],
                telegram_chat_id=options["telegram_chat"],
                discord_webhook=options["discord"],
            )
        except ValidationError as exc:
            raise CommandError(_errors(exc)) from None
        self.stdout.write(f"Added {describe(rule)}")


def _errors(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
    return " ".join(exc.messages)


def describe(rule: AlertRule) -> str:
    parts = [
        rule.name,
        "enabled" if rule.enabled else "disabled",
        f"min ${rule.min_usd:,.0f}",
        f"symbols {rule.symbols or 'all'}",
        f"venues {rule.venues or 'all'}",
        f"side {rule.side or 'both'}",
    ]
    if rule.is_cascade:
        parts.append(f"cascade ${rule.cascade_usd:,.0f} in {rule.cascade_seconds} s")
    if rule.cooldown_seconds:
        parts.append(f"cooldown {rule.cooldown_seconds} s")
    parts.append(target_label(rule))
    return " · ".join(parts)
