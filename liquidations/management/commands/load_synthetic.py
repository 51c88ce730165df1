from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from liquidations.devtools.bulk import bulk_load_synthetic


class Command(BaseCommand):
    help = "Load synthetic liquidations spread over the last N days (COPY on PostgreSQL)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--count", type=int, required=True, help="rows to insert")
        parser.add_argument("--days", type=float, default=30.0, help="spread over the last N days")
        parser.add_argument("--seed", type=int, default=None, help="random seed (repeatable)")
        parser.add_argument("--database", default="default", help="database alias")

    def handle(self, *args, count: int, days: float, seed: int | None, database: str, **options):
        if count <= 0 or days <= 0:
            raise CommandError("--count and --days must be positive")
        try:
            result = bulk_load_synthetic(
                count=count, days=days, seed=seed, using=database, progress=True
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Loaded {result.count} liquidations over {days:g} days in {result.seconds:.1f} s "
            f"({result.rows_per_second:,.0f} rows/s, {result.vendor})"
        )
