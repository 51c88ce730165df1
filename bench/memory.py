"""Worker memory: RSS of `manage.py runworker liquidations` before and after 1M events.

Production mode (PostgreSQL + Redis). The exchange (bench.loadgen, its own process)
sends the events in 100,000-event chunks as fast as the worker's socket takes them; the
worker reads until its backlog of unstored frames reaches its bound
(worker.MAX_BACKLOG_BYTES), then holds reading, so the rest of a chunk waits in TCP
buffers and at the exchange. RSS is read from /proc when the worker is connected and idle
(`rss_idle`), after the warm-up (`rss_before`, the baseline), after each chunk (`trace`)
and at the end (`rss_after`); it is also sampled while each chunk is stored (`peak`).

The warm-up is one chunk like every measured one (it used to be 20,000 events): a flood
larger than the bound fills the backlog to it, and that bounded peak belongs in the
baseline. A warm-up smaller than the bound reported the backlog's first fill as growth,
however flat the worker stayed afterwards. `rss_idle` shows what the warm-up costs.
Every chunk must be stored exactly (the unique rows are counted), and the worker's log
must show no reconnect: a bench that loses events or the connection fails. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

import orjson
import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import procs  # noqa: E402

WARMUP = 100_000


def stored(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM liquidations_liquidation").fetchone()
        return row[0]


class PeakRss:
    """The highest RSS of a process, sampled every 0.1 s by a thread while in the block."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.bytes = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.bytes = max(self.bytes, procs.rss_bytes(self.pid))
            if self._done.wait(0.1):
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def main(args) -> dict:
    url = procs.pg_create(f"{procs.DB_PREFIX}_memory")
    procs.redis_flush()
    exchange = subprocess.Popen(
        [procs.PYTHON, "-m", "bench.loadgen"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def command(text: str, answer: str) -> str:
        exchange.stdin.write(text + "\n")
        exchange.stdin.flush()
        line = exchange.stdout.readline().split()
        if not line or line[0] != answer:
            raise RuntimeError(f"load generator said {line!r}")
        return line[1]

    def feed(count: int, start_ms: int, seed: int, target: int, pid: int) -> int:
        """Send a chunk, wait until the worker has stored it; return the peak RSS meanwhile."""
        command(f"prep {count} {start_ms} {seed}", "ready")
        with PeakRss(pid) as peak:
            command("go", "sent")
            deadline = time.monotonic() + 600
            while (done := stored(url)) < target:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker stored {done} of {target}")
                time.sleep(0.2)
        if done != target:
            raise RuntimeError(f"worker stored {done} rows, expected {target}")
        return peak.bytes

    port = int(exchange.stdout.readline().split()[1])
    env = procs.app_env(
        database_url=url,
        redis=True,
        BINANCE_WS_BASE_URL=f"ws://127.0.0.1:{port}/market",
        BINANCE_REST_BASE_URL=f"http://127.0.0.1:{port}",
        LIQUIDATION_SYMBOLS="",
    )
    procs.manage("migrate", "--no-input", env=env)
    trace = []
    try:
        with procs.Processes() as ps:
            worker = ps.start(
                "worker-memory", [procs.PYTHON, "manage.py", "runworker", "liquidations"], env=env
            )
            command("wait 1", "clients")
            time.sleep(2)
            idle = procs.rss_bytes(worker.pid)
            start_ms = int(time.time() * 1000) - 10 * 86_400_000
            # bench_frames adds 2 % duplicates, which the worker skips: count unique rows.
            total = 0
            warmup_peak = feed(args.warmup, start_ms, 1, args.warmup, worker.pid)
            total += args.warmup
            start_ms += 10 * args.warmup
            time.sleep(2)
            before = procs.rss_bytes(worker.pid)
            trace.append({"events": 0, "rss": before, "peak": warmup_peak})
            started = time.perf_counter()
            done = 0
            seed = 2
            while done < args.events:
                chunk = min(args.chunk, args.events - done)
                total += chunk
                peak = feed(chunk, start_ms, seed, total, worker.pid)
                start_ms += 10 * chunk
                seed += 1
                done += chunk
                trace.append({"events": done, "rss": procs.rss_bytes(worker.pid), "peak": peak})
            elapsed = time.perf_counter() - started
            time.sleep(2)
            after = procs.rss_bytes(worker.pid)
            log = ps.log_tail(worker, lines=100_000)
    finally:
        exchange.stdin.write("quit\n")
        exchange.stdin.close()
        exchange.wait(timeout=10)
        procs.pg_drop(f"{procs.DB_PREFIX}_memory")
    reconnects = log.count("Upstream disconnected")
    if reconnects:
        raise RuntimeError(f"the worker reconnected {reconnects} times during the bench")
    return {
        "events": args.events,
        "warmup_events": args.warmup,
        "duplicates_sent": args.events // 50,
        "seconds": elapsed,
        "events_per_s": args.events / elapsed,
        "rss_idle": idle,
        "rss_before": before,
        "rss_after": after,
        "rss_peak": max(point["peak"] for point in trace[1:]),
        "growth": (after - before) / before,
        "reads_held": log.count("upstream reads wait for the writer"),
        "trace": trace,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    args = parser.parse_args()
    sys.stdout.write(orjson.dumps(main(args)).decode() + "\n")
