# Bybit and OKX beside Binance: every record, gap and rollup bucket carries its venue.
# Existing rows were all recorded from Binance, whose instrument id is the symbol itself.

from django.db import migrations, models
from django.db.models import F

VENUE_CHOICES = [("binance", "Binance"), ("bybit", "Bybit"), ("okx", "OKX")]


def instrument_is_symbol(apps, schema_editor):
    Liquidation = apps.get_model("liquidations", "Liquidation")
    Liquidation.objects.update(instrument=F("symbol"))


def venue_field(**options):
    return models.CharField(choices=VENUE_CHOICES, max_length=10, **options)


class Migration(migrations.Migration):
    dependencies = [
        ("liquidations", "0005_amount_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="liquidation",
            name="venue",
            field=venue_field(default="binance"),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="liquidation",
            name="instrument",
            field=models.CharField(default="", max_length=40),
            preserve_default=False,
        ),
        migrations.RunPython(instrument_is_symbol, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="liquidation",
            name="event_time",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="liquidation",
            name="last_filled_quantity",
            field=models.DecimalField(blank=True, decimal_places=12, max_digits=30, null=True),
        ),
        migrations.AlterField(
            model_name="liquidation",
            name="order_status",
            field=models.CharField(blank=True, max_length=20),
        ),
        migrations.AlterField(
            model_name="liquidation",
            name="order_type",
            field=models.CharField(blank=True, max_length=20),
        ),
        migrations.AlterField(
            model_name="liquidation",
            name="time_in_force",
            field=models.CharField(blank=True, max_length=10),
        ),
        migrations.RemoveConstraint(
            model_name="liquidation",
            name="liquidation_unique_event",
        ),
        migrations.AddConstraint(
            model_name="liquidation",
            constraint=models.UniqueConstraint(
                fields=("venue", "symbol", "side", "trade_time", "filled_quantity", "average_price"),
                name="liquidation_unique_venue_event",
            ),
        ),
        migrations.AddField(
            model_name="connectiongap",
            name="venue",
            field=venue_field(default="binance"),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="workerstate",
            name="venues",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="liquidationminute",
            name="venue",
            field=venue_field(default="binance"),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="liquidationhour",
            name="venue",
            field=venue_field(default="binance"),
            preserve_default=False,
        ),
        migrations.RemoveConstraint(
            model_name="liquidationminute",
            name="liquidationminute_key",
        ),
        migrations.RemoveConstraint(
            model_name="liquidationhour",
            name="liquidationhour_key",
        ),
        migrations.AddConstraint(
            model_name="liquidationminute",
            constraint=models.UniqueConstraint(
                fields=("scope", "venue", "start", "side"), name="liquidationminute_venue_key"
            ),
        ),
        migrations.AddConstraint(
            model_name="liquidationhour",
            constraint=models.UniqueConstraint(
                fields=("scope", "venue", "start", "side"), name="liquidationhour_venue_key"
            ),
        ),
    ]
