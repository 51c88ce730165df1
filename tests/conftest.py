from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import connections

CI = os.environ.get("CI") == "true"
REPO = Path(__file__).resolve().parents[1]
# The shared data beside the repository (as in CI); ORDERFOX_SHARED_DATA names another place
# (a worktree whose parent folder is not the one holding shared/).
SHARED_DATA = Path(
    os.environ.get("ORDERFOX_SHARED_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Production-mode tests need production settings: say so instead of failing on SQLite."""
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        return
    skip = pytest.mark.skip(
        reason="production-mode test: run `make test-production` (sets DATABASE_URL, REDIS_URL)"
    )
    for item in items:
        if item.get_closest_marker("production"):
            item.add_marker(skip)


async def eventually(predicate, *, timeout: float = 15.0, what: str = "condition") -> None:
    """Poll an async predicate until it holds (the timeout only bounds a failing test)."""
    import asyncio

    try:
        async with asyncio.timeout(timeout):
            while not await predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


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
    from liquidations.selectors.stats import page_stats_clear
    from liquidations.selectors.symbols import symbol_info_cache_clear

    symbol_info_cache_clear()
    page_stats_clear()
    yield
    symbol_info_cache_clear()
    page_stats_clear()


@pytest.fixture(autouse=True)
def _no_real_exchange(settings):
    """Nothing reaches a real exchange: a test enables the venues it points somewhere."""
    settings.LIQUIDATION_VENUES = ["binance"]
    settings.BINANCE_WS_BASE_URL = settings.BINANCE_REST_BASE_URL = "http://127.0.0.1:9"
    settings.BYBIT_WS_URL = settings.OKX_WS_URL = "ws://127.0.0.1:9/"
    settings.BYBIT_REST_BASE_URL = settings.OKX_REST_BASE_URL = "http://127.0.0.1:9"


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
    from liquidations.devtools.fake_exchange import FakeExchange

    async with FakeExchange(ping_interval=5.0, seed=1) as fx:
        yield fx


@pytest.fixture
def tcp_proxy():
    """Make loopback TCP proxies in front of real services; stop() cuts one, start() restores.

    For outage tests: point the app at proxy.port, never stop the real service.
    """
    from liquidations.devtools.tcp_proxy import TcpProxy

    made: list[TcpProxy] = []

    def make(url: str, default_port: int) -> TcpProxy:
        parts = urlsplit(url)
        proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or default_port).start()
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.stop()


def database_url(settings_dict: dict, *, port: int | None = None) -> str:
    """Return a postgres:// URL for a connection's settings (another port: a proxy's)."""
    from urllib.parse import quote

    user = quote(settings_dict.get("USER") or "")
    password = f":{quote(settings_dict['PASSWORD'])}" if settings_dict.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = port or settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


@pytest.fixture
def upstream_settings(settings, fake_exchange):
    """Point the ingest at the fake exchange (Binance only), with tiny reconnect delays."""
    settings.LIQUIDATION_VENUES = ["binance"]
    settings.BINANCE_WS_BASE_URL = fake_exchange.ws_base_url
    settings.BINANCE_WS_PUBLIC_URL = fake_exchange.ws_public_url
    settings.BINANCE_REST_BASE_URL = fake_exchange.rest_base_url
    settings.BYBIT_WS_URL = fake_exchange.bybit_ws_url
    settings.BYBIT_REST_BASE_URL = fake_exchange.rest_base_url
    settings.OKX_WS_URL = fake_exchange.okx_ws_url
    settings.OKX_REST_BASE_URL = fake_exchange.rest_base_url
    settings.LIQUIDATION_SYMBOLS = []
    settings.BINANCE_RECONNECT_INITIAL_SECONDS = 0.05
    settings.BINANCE_RECONNECT_MAX_SECONDS = 0.2
    settings.BINANCE_STABLE_CONNECTION_SECONDS = 60.0
    return settings


class LiveApp:
    """`manage.py serve` (embedded mode) in a subprocess, fed by the given fake exchange.

    Runs `migrate` on its own data directory first; `server_args` runs another server.
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        ws_base_url: str,
        rest_base_url: str,
        server_args: list[str] | None = None,
        ws_public_url: str = "",
        venues: str = "binance",
    ) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        # Arguments after `python`; "{port}" is replaced. Default: the embedded mode.
        self.server_args = server_args or [str(REPO / "manage.py"), "serve", "--port", "{port}"]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = data_dir / "serve.log"
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "DJANGO_DEBUG"}
        }
        self.env.update(
            DJANGO_SETTINGS_MODULE="orderfox.settings",
            ORDERFOX_DATA_DIR=str(data_dir),
            **exchange_env(ws_base_url=ws_base_url, rest_base_url=rest_base_url, venues=venues),
            # The /public route beside /market (depth streams): never the real exchange.
            BINANCE_WS_PUBLIC_URL=ws_public_url or ws_base_url.rsplit("/", 1)[0] + "/public",
            PYTHONUNBUFFERED="1",
        )
        self.process: subprocess.Popen | None = None
        self._manage(["migrate", "--no-input", "-v0"])

    def _manage(self, args: list[str]) -> None:
        subprocess.run(
            [sys.executable, str(REPO / "manage.py"), *args],
            env=self.env,
            cwd=REPO,
            check=True,
            timeout=60,
        )

    def create_superuser(self, username: str, password: str) -> None:
        """Create an admin login in this app's own database."""
        subprocess.run(
            [sys.executable, str(REPO / "manage.py"), "createsuperuser", "--no-input"]
            + ["--username", username, "--email", f"{username}@example.invalid"],
            env={**self.env, "DJANGO_SUPERUSER_PASSWORD": password},
            cwd=REPO,
            check=True,
            timeout=60,
            capture_output=True,
        )

    def start(self, timeout: float = 30.0) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, *(arg.replace("{port}", str(self.port)) for arg in self.server_args)],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"serve did not answer within {timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def restart(self) -> None:
        """Stop the server and start it again on the same port and data."""
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""


def exchange_env(*, ws_base_url: str, rest_base_url: str, venues: str = "binance") -> dict:
    """The environment pointing every venue at one fake exchange (only `venues` enabled)."""
    root = rest_base_url.replace("http://", "ws://", 1)
    return {
        "LIQUIDATION_VENUES": venues,
        "BINANCE_WS_BASE_URL": ws_base_url,
        "BINANCE_REST_BASE_URL": rest_base_url,
        "BYBIT_WS_URL": f"{root}/v5/public/linear",
        "BYBIT_REST_BASE_URL": rest_base_url,
        "OKX_WS_URL": f"{root}/ws/v5/public",
        "OKX_REST_BASE_URL": rest_base_url,
        "LIQUIDATION_SYMBOLS": "",
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_app(tmp_path, fake_exchange):
    """The app as users run it (`manage.py serve`), on a free loopback port, own data dir.

    Async tests only: the fake exchange runs on the test's event loop. Yields an object
    with .url, .restart(), .exchange (the FakeExchange) and .log().
    """
    app = LiveApp(
        data_dir=tmp_path,
        ws_base_url=fake_exchange.ws_base_url,
        rest_base_url=fake_exchange.rest_base_url,
        ws_public_url=fake_exchange.ws_public_url,
    )
    app.exchange = fake_exchange
    app.start()
    try:
        yield app
    finally:
        app.stop()


# -- browser tests: Debian's Chromium driven by Playwright -------------------------------

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = REPO / "test-output"
WAIT_MS = 20_000
ROWS = "#liquidation-rows tr.liq-row"


@pytest.fixture
async def browser():
    """A headless Chromium (skips without it, fails under CI=true)."""
    if not CHROMIUM.exists() and not shutil.which("chromium"):
        skip_or_fail("Chromium not found at /usr/bin/chromium (apt install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install -r requirements-dev.txt)")
    OUTPUT.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def feeding(exchange, rate: float):
    """Let the fake exchange publish synthetic liquidations while the block runs."""
    task = asyncio.create_task(exchange.generate(rate=rate))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def feeding_venues(exchange, rate: float):
    """Synthetic liquidations from Binance, Bybit and OKX in turn while the block runs."""
    task = asyncio.create_task(exchange.generate(rate=rate, venues=("binance", "bybit", "okx")))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


async def settled_rows(url: str) -> list[int]:
    """Return the row ids of a fresh load once the app has stored the last events.

    Settled means unchanged over three loads a second apart: on a busy machine the
    worker can pause longer than one interval with events still in its backlog.
    """
    seen: list[list[int]] = []
    for _ in range(30):
        html = await asyncio.to_thread(fetch, url)
        seen.append(sorted(int(i) for i in re.findall(r'<tr id="liq-(\d+)"', html)))
        if len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3]:
            return seen[-1]
        await asyncio.sleep(1.0)
    raise AssertionError(f"rows kept changing with the feed stopped: {url}")


async def row_ids(page) -> list[int]:
    return await page.eval_on_selector_all(ROWS, "rows => rows.map(r => +r.dataset.id)")


async def wait_for_new_rows(page, after_id: int, count: int = 1) -> None:
    await page.wait_for_function(
        """([selector, after, count]) => [...document.querySelectorAll(selector)]
               .filter(r => +r.dataset.id > after).length >= count""",
        arg=[ROWS, after_id, count],
        timeout=WAIT_MS,
    )


async def expect_status(page, text: str) -> None:
    await page.wait_for_function(
        "text => document.querySelector('.connection-status').textContent === text",
        arg=text,
        timeout=WAIT_MS,
    )


# -- commands ------------------------------------------------------------------------


async def run_command(*args, **kwargs) -> None:
    # Not thread-sensitive: the worker's consumer closes old connections in that one
    # thread before each handler, so a command waiting there for its reply would block it.
    def call() -> None:
        try:
            call_command(*args, **kwargs)
        finally:
            connections.close_all()

    await sync_to_async(call, thread_sensitive=False)()


# -- alerts: a loopback HTTP receiver that records and times every request -----------------


class Received:
    """One request the receiver got."""

    def __init__(self, *, path: str, headers: dict[str, str], body: bytes, status: int) -> None:
        self.path = path
        self.headers = headers
        self.body = body
        self.status = status  # what the receiver answered
        self.at = time.monotonic()
        self.wall = time.time()

    def json(self):
        import orjson

        return orjson.loads(self.body)


class Receiver:
    """An aiohttp server on loopback: answers `status` (or the next of `script`), records all.

    down()/up() stop and restart listening on the same port (connection refused between).
    """

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.status = 200
        self.script: list[tuple[int, dict[str, str]]] = []  # answered first, in order
        self.delay = 0.0  # seconds between recording a request and answering it
        self.port = _free_port()
        self._runner = None
        self._site = None
        self._arrived = asyncio.Condition()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request):
        from aiohttp import web

        body = await request.read()
        status, headers = self.script.pop(0) if self.script else (self.status, {})
        self.requests.append(
            Received(path=request.path, headers=dict(request.headers), body=body, status=status)
        )
        async with self._arrived:
            self._arrived.notify_all()
        if self.delay:
            await asyncio.sleep(self.delay)
        # No keep-alive: down() must leave no open connection that still answers.
        headers = {**headers, "Connection": "close"}
        return web.json_response({"ok": 200 <= status < 300}, status=status, headers=headers)

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await self.up()

    async def up(self) -> None:
        from aiohttp import web

        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await self._site.start()

    async def down(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def accepted(self) -> list[Received]:
        """The requests answered with a 2xx."""
        return [r for r in self.requests if 200 <= r.status < 300]

    async def wait_until(self, predicate, timeout: float = 15.0, what: str = "requests") -> None:
        """Wait until predicate(self) holds, checked at every arrival."""
        try:
            async with asyncio.timeout(timeout):
                async with self._arrived:
                    await self._arrived.wait_for(lambda: predicate(self))
        except TimeoutError:
            raise AssertionError(
                f"timed out waiting for {what}; got {len(self.requests)}"
            ) from None


@pytest.fixture
async def receiver():
    running = Receiver()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
def alert_settings(settings, receiver):
    """Alerts fast enough for tests, every destination pointed at the loopback receiver."""
    settings.ALERT_ALLOW_PRIVATE_TARGETS = True
    settings.ALERT_TELEGRAM_API_URL = receiver.url("/telegram")
    settings.ALERT_DISCORD_API_URL = receiver.url("/discord")
    settings.ALERT_POLL_SECONDS = 0.05
    settings.ALERT_COALESCE_SECONDS = 0.5
    settings.ALERT_RETRY_INITIAL_SECONDS = 0.1
    settings.ALERT_RETRY_MAX_SECONDS = 0.4
    settings.ALERT_MAX_ATTEMPTS = 50
    settings.ALERT_TIMEOUT_SECONDS = 5.0
    return settings
