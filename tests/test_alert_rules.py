"""Alert rules: `manage.py alerts`, the admin, refused targets, and secrets kept secret."""

from __future__ import annotations

import io
from decimal import Decimal

import aiohttp
import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from liquidations.alert_models import AlertDelivery, AlertRule
from liquidations.alerts.delivery import OutgoingRequest, deliver, redact
from liquidations.alerts.messages import AlertMessage, discord_text, telegram_text
from liquidations.alerts.telegram import telegram_request
from liquidations.models import Liquidation
from liquidations.services.alert_rules import alert_rule_create
from liquidations.upstream.binance import parse_frame
from tests.factories import force_order, frame
from tests.factories import store_events as liquidation_store_batch

pytestmark = pytest.mark.django_db

TOKEN = "987654:telegram-TOKEN-not-to-show"
SECRET = "hmac-SECRET-not-to-show"
DISCORD = "https://discord.com/api/webhooks/111222333/discord-TOKEN-not-to-show"
ITEM = {
    "id": 1,
    "venue": "binance",
    "symbol": "BTCUSDT",
    "side": "SELL",
    "quantity": "20",
    "price": "100000",
    "usd": "2000000",
    "time_ms": 0,
}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("alerts", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def allowed(settings):
    settings.ALERT_ALLOW_PRIVATE_TARGETS = True
    return settings


def test_add_list_remove_never_print_secrets(allowed):
    added = run(
        "add", "--min-usd", "1000000", "--webhook", "http://127.0.0.1:9/hook", "--secret", SECRET
    )
    run(
        "add",
        "--name",
        "tg",
        "--telegram-token",
        TOKEN,
        "--telegram-chat",
        "-100",
        "--side",
        "long",
    )
    run(
        "add",
        "--name",
        "dc",
        "--discord",
        DISCORD,
        "--cascade-seconds",
        "60",
        "--cascade-usd",
        "5e6",
    )
    listed = run("list")
    for text in (added, listed):
        assert SECRET not in text and TOKEN not in text and "discord-TOKEN" not in text
    assert "rule-1 · enabled · min $1,000,000" in listed
    assert "webhook http://127.0.0.1:9" in listed
    assert "tg · enabled · min $0 · symbols all · venues all · side SELL" in listed
    assert "cascade $5,000,000 in 60 s · discord webhook 111222333" in listed
    assert run("remove", "tg") == "Removed tg.\n"
    assert list(AlertRule.objects.values_list("name", flat=True)) == ["dc", "rule-1"]
    with pytest.raises(CommandError, match="No rule named 'tg'"):
        run("remove", "tg")


def test_bad_rules_get_a_clear_answer(allowed):
    with pytest.raises(CommandError, match="exactly one of"):
        run("add", "--min-usd", "5")
    with pytest.raises(CommandError, match="webhook_secret: required"):
        run("add", "--webhook", "https://example.com/hook")
    with pytest.raises(CommandError, match="cascade needs both"):
        run("add", "--discord", DISCORD, "--cascade-seconds", "60")
    with pytest.raises(CommandError, match="unknown venue"):
        run("add", "--discord", DISCORD, "--venues", "binance,ftx")
    with pytest.raises(CommandError, match="expected a Discord webhook URL"):
        run("add", "--discord", "https://discord.com/nothing")
    with pytest.raises(CommandError, match="invalid usd value"):
        run("add", "--discord", DISCORD, "--min-usd", "lots")
    assert not AlertRule.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_a_private_target_is_refused_without_the_setting(settings, url):
    settings.ALERT_ALLOW_PRIVATE_TARGETS = False
    with pytest.raises(ValidationError, match="ALERT_ALLOW_PRIVATE_TARGETS=1"):
        alert_rule_create(destination="webhook", webhook_url=url, webhook_secret="s")
    settings.ALERT_ALLOW_PRIVATE_TARGETS = True
    alert_rule_create(destination="webhook", webhook_url=url, webhook_secret="s")


def test_a_public_address_is_accepted(settings):
    settings.ALERT_ALLOW_PRIVATE_TARGETS = False
    rule = alert_rule_create(
        destination="webhook", webhook_url="https://93.184.216.34/h", webhook_secret="s"
    )
    assert rule.start_after_id == 0


async def test_a_private_target_is_refused_at_send_time_too(settings, receiver):
    # Allowed when saved, then the setting is off (or the name now resolves elsewhere).
    settings.ALERT_ALLOW_PRIVATE_TARGETS = False
    request = OutgoingRequest(
        url=receiver.url(), body=b"{}", headers={}, limit_key="k", rate=None, check_target=True
    )
    async with aiohttp.ClientSession() as session:
        outcome = await deliver(session, request, timeout=5)
    assert outcome.state == "failed"
    assert "non-public address (127.0.0.1)" in outcome.reason
    assert receiver.requests == []


async def test_failure_reasons_carry_no_token(settings, receiver):
    settings.ALERT_TELEGRAM_API_URL = receiver.url("/tg")
    rule = AlertRule(telegram_token=TOKEN, telegram_chat_id="1")
    message = AlertMessage(1, "r", [ITEM], None, 1, Decimal(2_000_000))
    receiver.script = [(400, {})]
    async with aiohttp.ClientSession() as session:
        request = telegram_request(rule, message)
        refused = await deliver(session, request, timeout=5)
        await receiver.down()
        unreachable = await deliver(session, request, timeout=5)
    assert receiver.requests[0].path == f"/tg/bot{TOKEN}/sendMessage"
    assert refused.state == "failed" and refused.reason.startswith("HTTP 400")
    assert unreachable.state == "retry"
    for reason in (refused.reason, unreachable.reason, redact(f"GET /bot{TOKEN}/x", [TOKEN])):
        assert TOKEN not in reason and "telegram-TOKEN" not in reason


def test_message_text_escapes_telegram_html_and_discord_markdown():
    message = AlertMessage(1, "<i>a</i> & @here *b* [x](y)", [ITEM], None, 1, Decimal(2_000_000))
    assert telegram_text(message) == (
        "<b>OrderFox · &lt;i&gt;a&lt;/i&gt; &amp; @here *b* [x](y): "
        "BTCUSDT long liquidated $2.0M (20 @ 100000, binance)</b>"
    )
    assert discord_text(message).startswith(
        "**OrderFox · \\<i\\>a\\</i\\> & \\@here \\*b\\* \\[x\\]\\(y\\)\\: BTCUSDT long "
        "liquidated $2.0M \\(20 \\@ 100000, binance\\)**"
    )


@pytest.fixture
def admin_client_with_rules(admin_client, allowed):
    alert_rule_create(
        name="hook", destination="webhook", webhook_url="https://x.example/h", webhook_secret=SECRET
    )
    alert_rule_create(name="tg", destination="telegram", telegram_token=TOKEN, telegram_chat_id="5")
    alert_rule_create(name="dc", destination="discord", discord_webhook=DISCORD)
    return admin_client


def test_the_admin_never_shows_secrets(admin_client_with_rules):
    client = admin_client_with_rules
    pages = [client.get("/admin/liquidations/alertrule/")]
    pages += [
        client.get(f"/admin/liquidations/alertrule/{rule.pk}/change/")
        for rule in AlertRule.objects.all()
    ]
    for page in pages:
        html = page.content.decode()
        assert page.status_code == 200
        assert SECRET not in html and TOKEN not in html and "discord-TOKEN" not in html
    assert "telegram chat 5" in pages[0].content.decode()


def test_an_admin_change_keeps_blank_secrets_and_restarts_the_rule(admin_client_with_rules):
    rule = AlertRule.objects.get(name="tg")
    liquidation_store_batch([parse_frame(frame(force_order()))])
    form = {
        "name": "tg",
        "enabled": "on",
        "venues": "",
        "symbols": "btcusdt",
        "side": "",
        "min_usd": "250000",
        "cooldown_seconds": "0",
        "destination": "telegram",
        "telegram_token": "",
        "telegram_chat_id": "5",
    }
    page = admin_client_with_rules.post(f"/admin/liquidations/alertrule/{rule.pk}/change/", form)
    assert page.status_code == 302, page.content.decode()[:2000]
    rule.refresh_from_db()
    assert rule.telegram_token == TOKEN
    assert rule.symbols == "BTCUSDT" and rule.min_usd == 250_000
    assert rule.start_after_id == Liquidation.objects.get().pk  # applies from now on


def test_the_admin_refuses_a_private_webhook_with_the_reason(admin_client, settings):
    settings.ALERT_ALLOW_PRIVATE_TARGETS = False
    form = {
        "name": "x",
        "enabled": "on",
        "min_usd": "0",
        "cooldown_seconds": "0",
        "destination": "webhook",
        "webhook_url": "http://127.0.0.1:1/h",
        "webhook_secret": "s",
    }
    page = admin_client.post("/admin/liquidations/alertrule/add/", form)
    assert page.status_code == 200
    assert "ALERT_ALLOW_PRIVATE_TARGETS=1" in page.content.decode()
    assert not AlertRule.objects.exists()


def test_the_delivery_log_lists_states_and_reasons(admin_client_with_rules):
    rule = AlertRule.objects.get(name="hook")
    AlertDelivery.objects.create(
        rule=rule,
        items=[],
        count=1,
        total_usd=1,
        state="failed",
        reason="HTTP 404: not found",
        next_attempt_at="2026-01-01T00:00:00Z",
    )
    page = admin_client_with_rules.get("/admin/liquidations/alertdelivery/?state=failed")
    assert page.status_code == 200
    assert "HTTP 404: not found" in page.content.decode()
