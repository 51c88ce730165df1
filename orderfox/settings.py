"""Settings for OrderFox Liquidations, read from the environment.

Embedded mode (no DATABASE_URL, no REDIS_URL): SQLite in WAL mode, in-memory channel
layer, the worker inside the web process. Production mode: PostgreSQL via DATABASE_URL,
Redis via REDIS_URL, daphne and `runworker liquidations` as separate processes.
Every variable read here is listed, with its default, in README.md.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    value = env_str(name)
    if not value:
        return default
    return value.lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


DATABASE_URL = env_str("DATABASE_URL")
REDIS_URL = env_str("REDIS_URL")
# Production mode: any external service configured. It must be given a real secret key.
PRODUCTION = bool(DATABASE_URL or REDIS_URL)
# The in-memory layer only reaches its own process, so without Redis the web process
# hosts the worker itself.
EMBEDDED_WORKER = not REDIS_URL

DATA_DIR = Path(env_str("ORDERFOX_DATA_DIR") or BASE_DIR / "var")


def _embedded_secret_key() -> str:
    """Return a secret key kept in DATA_DIR, generating it on first run."""
    path = DATA_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    path.write_text(key)
    path.chmod(0o600)
    return key


SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set in production mode (DATABASE_URL or REDIS_URL set)."
        )
    SECRET_KEY = _embedded_secret_key()

DEBUG = env_bool("DJANGO_DEBUG")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")


def https_settings() -> dict[str, object]:
    """What DJANGO_HTTPS=1 turns on: the site is reached over HTTPS only.

    Directly or through a TLS proxy that sets X-Forwarded-Proto (and overwrites any the
    client sent). Plain-HTTP requests are redirected (except /health, for load balancers
    probing over HTTP), browsers keep to HTTPS for a year (HSTS, subdomains included,
    preload-ready), and the session and CSRF cookies are Secure.
    """
    return {
        "SECURE_SSL_REDIRECT": True,
        "SECURE_REDIRECT_EXEMPT": [r"^health$"],
        "SECURE_HSTS_SECONDS": 365 * 24 * 3600,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
    }


HTTPS = env_bool("DJANGO_HTTPS")
if HTTPS:
    globals().update(https_settings())

INSTALLED_APPS = [
    # daphne first: its runserver replaces Django's (check daphne.E001).
    "daphne",
    "liquidations",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # No inline script or style anywhere; the page connects to its own socket only.
    "liquidations.web.middleware.ContentSecurityPolicyMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Query parameters with control characters get a 400 before any view reads them.
    "liquidations.web.middleware.BadInputMiddleware",
    # The database away: a 503 page (JSON under /api/), not "Server Error (500)".
    "liquidations.web.middleware.DatabaseOutageMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # request.htmx: whether a request came from htmx, and what kind (django-htmx).
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "orderfox.urls"
ASGI_APPLICATION = "orderfox.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if DATABASE_URL:
    # A pool per process (psycopg_pool), not persistent connections: under ASGI each
    # request's sync code runs in a thread of its own, so CONN_MAX_AGE kept nothing and
    # every page load opened (and forked) a PostgreSQL connection (~5 ms a page, make
    # bench). With the database down, a request waits `timeout` s for a connection,
    # then fails (a 503 from /health).
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": 10,
        "timeout": 3,
        # psycopg_pool retries a lost connection with a delay doubling up to this long
        # (default 5 min: after a long outage its next attempt could be 2 min away, and
        # the worker resumed 9-32 s after PostgreSQL returned). Given up after 2 s, the
        # next request or the worker's next probe (every 2 s) connects afresh at once.
        "reconnect_timeout": 2,
    }
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "db.sqlite3"),
            "OPTIONS": {
                # WAL lets pages read while the worker writes; IMMEDIATE avoids
                # "database is locked" upgrades from read to write transactions.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_CHANNEL_LAYER = env_str("REDIS_CHANNEL_LAYER", "pubsub")
if REDIS_CHANNEL_LAYER not in {"pubsub", "core"}:
    raise ImproperlyConfigured("REDIS_CHANNEL_LAYER must be 'pubsub' or 'core'.")
if REDIS_URL and REDIS_CHANNEL_LAYER == "pubsub":
    # Chosen by `make bench` (README, Performance): one PUBLISH per batch and group,
    # fanned out inside each daphne process. Nothing expires or is capped in transit;
    # Redis's pubsub output-buffer limit (client-output-buffer-limit) bounds a stuck
    # subscriber, which then reconnects instead of losing messages silently.
    CHANNEL_LAYERS: dict[str, dict[str, Any]] = {
        "default": {
            # channels-redis's pub/sub layer, decoding a batch once per process.
            "BACKEND": "liquidations.live.layers.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": env_str("CHANNELS_REDIS_PREFIX", "orderfox"),
            },
        }
    }
elif REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": env_str("CHANNELS_REDIS_PREFIX", "orderfox"),
                # A crash-day burst must queue, not be dropped: room for ~10 s at the
                # exchange's ceiling on every group member's channel.
                "capacity": 5000,
                "expiry": 60,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            # The stock in-memory layer, without a deep copy per group member.
            "BACKEND": "liquidations.live.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 5000, "expiry": 60},
        }
    }

if REDIS_URL:
    # redis-py >= 6 gives every read a 5 s socket timeout, exactly channels-redis's
    # blocking-receive timeout: an idle receive then raised TimeoutError and ended the
    # worker after ~5 s. Reads wait longer than any blocking command here.
    CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [{"address": REDIS_URL, "socket_timeout": 30}]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# After `collectstatic` (production), ServeStatic serves the collected files; before it
# (make run, tests), straight from static/.
SERVESTATIC_USE_FINDERS = not STATIC_ROOT.is_dir()
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # collectstatic also writes gzip copies, which ServeStatic serves to browsers that ask.
    "staticfiles": {"BACKEND": "servestatic.storage.CompressedStaticFilesStorage"},
}

# Upstream (Binance USD-M futures). The unrouted /ws and /stream paths were retired on
# 2026-04-23: they accept connections but deliver nothing, so /market is the default.
BINANCE_WS_BASE_URL = env_str("BINANCE_WS_BASE_URL", "wss://fstream.binance.com/market").rstrip("/")
BINANCE_REST_BASE_URL = env_str("BINANCE_REST_BASE_URL", "https://fapi.binance.com").rstrip("/")
LIQUIDATION_SYMBOLS = [s.upper() for s in env_list("LIQUIDATION_SYMBOLS")]
if _bad_symbols := [s for s in LIQUIDATION_SYMBOLS if not re.fullmatch(r"[A-Z0-9]{1,30}", s)]:
    raise ImproperlyConfigured(f"LIQUIDATION_SYMBOLS has invalid symbols: {_bad_symbols}")
LIQUIDATION_API_BASE_URL = env_str("LIQUIDATION_API_BASE_URL").rstrip("/")
# The venues the worker records, each on its own connection (liquidations.upstream.events
# VENUES lists the ones the app knows).
LIQUIDATION_VENUES = list(
    dict.fromkeys(v.lower() for v in env_list("LIQUIDATION_VENUES", "binance,bybit,okx"))
)
if _bad_venues := [v for v in LIQUIDATION_VENUES if v not in ("binance", "bybit", "okx")]:
    raise ImproperlyConfigured(
        f"LIQUIDATION_VENUES has unknown venues: {_bad_venues} (known: binance, bybit, okx)"
    )
# Bybit v5 public linear stream (allLiquidation.<SYMBOL>) and its instrument listing.
BYBIT_WS_URL = env_str("BYBIT_WS_URL", "wss://stream.bybit.com/v5/public/linear")
BYBIT_REST_BASE_URL = env_str("BYBIT_REST_BASE_URL", "https://api.bybit.com").rstrip("/")
# OKX v5 public stream (liquidation-orders of every SWAP) and its instrument listing.
OKX_WS_URL = env_str("OKX_WS_URL", "wss://ws.okx.com:8443/ws/v5/public")
OKX_REST_BASE_URL = env_str("OKX_REST_BASE_URL", "https://www.okx.com").rstrip("/")

HOST = env_str("HOST", "127.0.0.1")
PORT = int(env_str("PORT", "8000"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    # A fault that repeats (Redis or PostgreSQL away, a flood of bad frames) is logged a
    # few times a minute, then summarised: liquidations/logs.py. Counters stay exact.
    "filters": {"repeats": {"()": "liquidations.logs.RepeatFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["repeats"],
        },
    },
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "liquidations": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

# Live fan-out (liquidations/live/coalescing.py): each web process holds its next round
# of frames until writing them takes at most LIVE_FANOUT_BUDGET of its time (a quiet
# process never waits), and never longer than LIVE_FANOUT_MAX_WINDOW seconds (0: no
# coalescing). The worker publishes every batch as soon as it is stored. With Redis
# (production) several web processes and the worker share the machine: 0.3 each; the
# one embedded process gets 0.5 (docs/performance.md, "Coalescing by load").
LIVE_FANOUT_BUDGET = float(env_str("LIVE_FANOUT_BUDGET", "0.3" if REDIS_URL else "0.5"))
LIVE_FANOUT_MAX_WINDOW = float(env_str("LIVE_FANOUT_MAX_WINDOW", "0.1"))

# Reconnect backoff and connection rotation (Binance cuts connections at 24 h); the
# BINANCE_* connection and listing settings below apply to every venue's connection.
BINANCE_RECONNECT_INITIAL_SECONDS = 1.0
BINANCE_RECONNECT_MAX_SECONDS = 30.0
BINANCE_MAX_CONNECTION_SECONDS = 23.5 * 3600
# A connection that stayed up this long resets the backoff.
BINANCE_STABLE_CONNECTION_SECONDS = 60.0
# Upstream keepalive: every frame proves the connection alive; after this long without
# one (while reading) the worker pings, and fails the connection when neither a frame nor
# the pong follows within the timeout.
BINANCE_PING_INTERVAL_SECONDS = 20.0
BINANCE_PING_TIMEOUT_SECONDS = 20.0
# Bybit asks for {"op":"ping"} every 20 s; OKX closes a connection silent for 30 s, so
# "ping" goes after 20 s without a frame.
BYBIT_PING_INTERVAL_SECONDS = 20.0
OKX_PING_INTERVAL_SECONDS = 20.0
# Symbol table from /fapi/v1/exchangeInfo: refreshed hourly, retried sooner on failure.
BINANCE_REST_TIMEOUT_SECONDS = 15.0
BINANCE_EXCHANGE_INFO_REFRESH_SECONDS = 3600.0
BINANCE_EXCHANGE_INFO_RETRY_SECONDS = 60.0

# Market data for the symbol page (candles, trades tape, order book; docs/market-data.md).
# Depth streams live on Binance's /public route; klines and aggTrade on /market
# (BINANCE_WS_BASE_URL). The worker subscribes a stream while some viewer watches it.
BINANCE_WS_PUBLIC_URL = env_str("BINANCE_WS_PUBLIC_URL", "wss://fstream.binance.com/public").rstrip(
    "/"
)
# How long a stream stays subscribed after its last viewer left (a returning viewer, a
# reload, costs no new SUBSCRIBE).
MARKET_UNSUBSCRIBE_GRACE_SECONDS = 30.0
# Web processes renew their watch this often; the worker forgets a watch not renewed within
# the lease (a web process that died).
MARKET_WATCH_RENEW_SECONDS = 10.0
MARKET_WATCH_LEASE_SECONDS = 35.0
# Candles from GET /fapi/v1/klines are reused this long per (symbol, timeframe).
MARKET_KLINES_CACHE_SECONDS = 10.0
# Levels of the REST snapshot a local order book starts from (weight 20).
MARKET_DEPTH_SNAPSHOT_LIMIT = 1000

# Alerts (docs/alerts.md). Destination base URLs are settings so tests can point them at
# a loopback receiver; a webhook on a non-public address is refused unless allowed.
ALERT_ALLOW_PRIVATE_TARGETS = env_bool("ALERT_ALLOW_PRIVATE_TARGETS")
ALERT_TELEGRAM_API_URL = env_str("ALERT_TELEGRAM_API_URL", "https://api.telegram.org").rstrip("/")
ALERT_DISCORD_API_URL = env_str("ALERT_DISCORD_API_URL", "https://discord.com/api").rstrip("/")
# At most one message per rule per this many seconds: a burst is summed in one message.
ALERT_COALESCE_SECONDS = float(env_str("ALERT_COALESCE_SECONDS", "2"))
# Attempts per message before it is marked failed (backoff doubles from 2 s up to 5 min,
# or what the destination's Retry-After says).
ALERT_MAX_ATTEMPTS = int(env_str("ALERT_MAX_ATTEMPTS", "10"))
ALERT_POLL_SECONDS = 0.5
ALERT_RETRY_INITIAL_SECONDS = 2.0
ALERT_RETRY_MAX_SECONDS = 300.0
ALERT_TIMEOUT_SECONDS = 10.0

# The amount indexes carry INCLUDE columns for PostgreSQL's index-only scans (migration
# 0005); SQLite builds them on their key columns alone, which is what W040 says.
SILENCED_SYSTEM_CHECKS = ["models.W040"]
