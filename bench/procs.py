"""Start, watch and clean up what a bench run needs: databases, Redis, app processes."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
# The app under test: this checkout, or another commit's tree (run.py's side-by-side cells
# export one and point BENCH_APP_ROOT at it); the bench's own code is always this one.
APP_ROOT = Path(os.environ.get("BENCH_APP_ROOT") or ROOT)
PYTHON = sys.executable
PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
# Databases this bench may create and drop; several benches on one server need their own.
DB_PREFIX = os.environ.get("BENCH_DB_PREFIX", "orderfox_bench")
assert DB_PREFIX.startswith("orderfox_bench"), "BENCH_DB_PREFIX must start with orderfox_bench"
SECRET = "bench-only-not-secret"


def pg_url(dbname: str) -> str:
    parts = urlsplit(PG_URL)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


def _admin_connect():
    import psycopg

    return psycopg.connect(PG_URL, autocommit=True)


def pg_create(dbname: str, *, drop: bool = True) -> str:
    assert dbname.startswith("orderfox_bench"), dbname
    with _admin_connect() as conn:
        if drop:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{dbname}"')
    return pg_url(dbname)


def pg_drop(dbname: str) -> None:
    assert dbname.startswith("orderfox_bench"), dbname
    with _admin_connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def redis_flush() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on port {port} after {timeout} s")


def app_env(*, database_url: str | None = None, redis: bool = False, **extra: str) -> dict:
    """Environment for an app process: embedded unless a database/Redis is given."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        DJANGO_SETTINGS_MODULE="orderfox.settings",
        DJANGO_SECRET_KEY=SECRET,
        DJANGO_DEBUG="",
        CHANNELS_REDIS_PREFIX=f"orderfox-bench-{os.getpid()}",
        # The load generator speaks Binance's protocol; nothing may reach a real venue.
        LIQUIDATION_VENUES="binance",
        PYTHONUNBUFFERED="1",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    if redis:
        env["REDIS_URL"] = REDIS_URL
    env.update(extra)
    return env


def manage(*args: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=APP_ROOT,
        env=env,
        check=check,
        capture_output=True,
        text=True,
    )


class Processes:
    """Every process the bench started, stopped (by pid) when the block ends."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.logdir = Path(tempfile.mkdtemp(prefix="orderfox-bench-logs-"))

    def start(self, name: str, args: list[str], *, env: dict) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            args,
            cwd=APP_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc._bench_log = log  # type: ignore[attr-defined]
        proc._bench_name = name  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 20.0) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                # The whole session: daphne children of serve_web included.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        proc._bench_log.close()  # type: ignore[attr-defined]
        if proc in self.procs:
            self.procs.remove(proc)

    def pids(self) -> dict[str, int]:
        """Name → pid of every process running."""
        return {proc._bench_name: proc.pid for proc in self.procs}  # type: ignore[attr-defined]

    def log_tail(self, proc: subprocess.Popen, lines: int = 30) -> str:
        path = self.logdir / f"{proc._bench_name}.log"  # type: ignore[attr-defined]
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def rss_bytes(pid: int) -> int:
    """Resident set size of one process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (serve_web's daphne processes)."""
    pids = [pid]
    for child in children(pid):
        pids += process_tree(child)
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time one process has used, from /proc (0 once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks) - idle) / CLOCK_TICKS, sum(ticks) / CLOCK_TICKS


class CpuMeter:
    """CPU used during a measurement, in cores: each app process, this process, all.

    The bench shares the machine with the app it measures (the exchange and every viewer
    socket run in the driver), so a figure only means something next to how busy the
    machine was while it was taken.
    """

    def __init__(self, app: dict[str, int]) -> None:
        """app: name → pid of each process started (its children count with it)."""
        self.app = {name: process_tree(pid) for name, pid in app.items()}
        self._start = self._read()

    def _read(self) -> dict[str, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        busy, total = machine_cpu()
        read = {name: sum(map(cpu_seconds, pids)) for name, pids in self.app.items()}
        read.update(
            wall=time.monotonic(), bench=usage.ru_utime + usage.ru_stime, busy=busy, total=total
        )
        return read

    def result(self) -> dict:
        """Cores used since the meter started (machine_busy: a fraction of all cores)."""
        end = self._read()
        used = {key: end[key] - self._start[key] for key in end}
        wall = used["wall"]
        return {
            "app_cores": round(sum(used[name] for name in self.app) / wall, 2),
            "by_process": {name: round(used[name] / wall, 2) for name in self.app},
            "bench_cores": round(used["bench"] / wall, 2),
            "machine_busy": round(used["busy"] / used["total"], 3) if used["total"] else None,
        }


def stats(samples: list[float]) -> dict:
    """Median and p99 (nearest rank) of a sample list; None when empty."""
    if not samples:
        return {"n": 0, "median": None, "p99": None, "p95": None}
    ordered = sorted(samples)
    n = len(ordered)

    def rank(q: float) -> float:
        return ordered[min(n - 1, max(0, int(q * n + 0.999999) - 1))]

    return {"n": n, "median": rank(0.5), "p95": rank(0.95), "p99": rank(0.99)}
