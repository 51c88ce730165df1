from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CI = os.environ.get("CI") == "true"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL_CAPTURE = SHARED_DATA / "binance-force-orders-2025-12-27.jsonl"


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def pytest_configure(config: pytest.Config) -> None:
    """In the production-mode run, a missing service fails under CI and skips elsewhere."""
    missing = [
        f"{name} at {url}"
        for name, var, port in (("PostgreSQL", "DATABASE_URL", 5432), ("Redis", "REDIS_URL", 6379))
        if (url := os.environ.get(var)) and not _reachable(url, port)
    ]
    if not missing:
        return
    reason = "not reachable: " + ", ".join(missing)
    if CI:
        raise pytest.UsageError(f"production-mode tests need their services; {reason}")
    pytest.exit(f"skipping production-mode tests, {reason}", returncode=0)


def skip_or_fail(reason: str) -> None:
    """Skip with a one-line reason, except under CI where a missing prerequisite fails."""
    if CI:
        pytest.fail(f"{reason} (CI=true: nothing may be skipped)")
    pytest.skip(reason)


@pytest.fixture
def real_capture() -> Path:
    """The shared real capture of Binance liquidations (beside the repo, as in CI)."""
    if not REAL_CAPTURE.exists():
        skip_or_fail(f"real capture not found at {REAL_CAPTURE}")
    return REAL_CAPTURE


@pytest.fixture(autouse=True)
def _fresh_symbol_cache():
    from liquidations.selectors import symbol_info_cache_clear

    symbol_info_cache_clear()
    yield
    symbol_info_cache_clear()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """Close connections after each use, so no thread holds the test database open.

    SQLite tests use a WAL file like the app, not the shared-cache in-memory database,
    whose table locks fail a reader at once while the worker's thread writes.
    """
    from django.conf import settings

    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        test_db = tmp_path_factory.mktemp("sqlite") / "test.sqlite3"
        settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = str(test_db)


@pytest.fixture
async def fake_exchange():
    """A started FakeExchange on an ephemeral loopback port (fast server pings)."""
    from liquidations.fake_exchange import FakeExchange

    async with FakeExchange(ping_interval=5.0, seed=1) as fx:
        yield fx


@pytest.fixture
def upstream_settings(settings, fake_exchange):
    """Point the ingest at the fake exchange, with tiny reconnect delays."""
    settings.BINANCE_WS_BASE_URL = fake_exchange.ws_base_url
    settings.BINANCE_REST_BASE_URL = fake_exchange.rest_base_url
    settings.LIQUIDATION_SYMBOLS = []
    settings.BINANCE_RECONNECT_INITIAL_SECONDS = 0.05
    settings.BINANCE_RECONNECT_MAX_SECONDS = 0.2
    settings.BINANCE_STABLE_CONNECTION_SECONDS = 60.0
    return settings
