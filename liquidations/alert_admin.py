"""Admin for alerts: rules (secrets write-only) and the delivery log (read-only)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from .alert_models import AlertDelivery, AlertRule
from .alerts.destinations import target_label
from .services.alert_rules import alert_rule_save, alert_rule_validate
from .services.alerts import alert_deliveries_retry

SECRET_FIELDS = ("webhook_secret", "telegram_token", "discord_webhook")


class AlertRuleForm(forms.ModelForm):
    """Secrets are typed, never shown back: left blank on a change, the old one is kept."""

    webhook_url = forms.URLField(max_length=500, required=False, assume_scheme="https")

    class Meta:
        model = AlertRule
        fields = (
            "name",
            "enabled",
            "venues",
            "symbols",
            "side",
            "min_usd",
            "cascade_seconds",
            "cascade_usd",
            "cooldown_seconds",
            "destination",
            "webhook_url",
            "webhook_secret",
            "telegram_token",
            "telegram_chat_id",
            "discord_webhook",
        )
        widgets = {name: forms.PasswordInput(render_value=False) for name in SECRET_FIELDS}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in SECRET_FIELDS:
            if name in self.fields and self.instance.pk and getattr(self.instance, name):
                self.fields[name].help_text = "Set; leave blank to keep it."

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for name in SECRET_FIELDS:
            if not data.get(name) and self.instance.pk:
                data[name] = getattr(self.instance, name)
        fields = {f.name for f in AlertRule._meta.concrete_fields}
        probe = AlertRule(**{key: value for key, value in data.items() if key in fields})
        try:
            alert_rule_validate(rule=probe)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, errors)
        return data


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    form = AlertRuleForm
    list_display = (
        "name",
        "enabled",
        "target",
        "min_usd",
        "symbols",
        "venues",
        "side",
        "cascade",
        "cooldown_seconds",
        "updated_at",
    )
    list_filter = ("enabled", "destination")
    search_fields = ("name", "symbols")

    @admin.display(description="destination")
    def target(self, obj: AlertRule) -> str:
        return target_label(obj)

    @admin.display(description="cascade")
    def cascade(self, obj: AlertRule) -> str:
        return f"${obj.cascade_usd:,.0f} in {obj.cascade_seconds} s" if obj.is_cascade else "—"

    def save_model(self, request: HttpRequest, obj: AlertRule, form: Any, change: bool) -> None:
        alert_rule_save(rule=obj)


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(admin.ModelAdmin):
    """The delivery log: what was sent, is being retried, or failed, and why."""

    list_display = (
        "id",
        "rule",
        "state",
        "count",
        "total_usd",
        "attempts",
        "created_at",
        "sent_at",
        "next_attempt_at",
        "reason",
    )
    list_filter = ("state", "rule")
    date_hierarchy = "created_at"
    actions = ("retry_now",)
    readonly_fields = [f.name for f in AlertDelivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Send the selected failed or retrying alerts again now")
    def retry_now(self, request: HttpRequest, queryset: QuerySet[AlertDelivery]) -> None:
        count = alert_deliveries_retry(ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"{count} alert(s) will be sent again within a second.")
