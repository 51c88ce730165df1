from django.apps import AppConfig


class LiquidationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "liquidations"
    verbose_name = "Liquidations"

    def ready(self) -> None:
        from . import pg_timestamps

        pg_timestamps.connect()
