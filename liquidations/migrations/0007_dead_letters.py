# Events the database refused, kept with their raw frame, the error and their venue;
# the worker's last error per kind of fault.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("liquidations", "0006_venues"),
    ]

    operations = [
        migrations.CreateModel(
            name="DeadLetter",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("created_at", models.DateTimeField()),
                (
                    "venue",
                    models.CharField(
                        choices=[("binance", "Binance"), ("bybit", "Bybit"), ("okx", "OKX")],
                        max_length=10,
                    ),
                ),
                ("frame", models.TextField()),
                ("error", models.TextField()),
            ],
            options={
                "ordering": ["-created_at", "-id"],
            },
        ),
        migrations.AddField(
            model_name="workerstate",
            name="last_errors",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
