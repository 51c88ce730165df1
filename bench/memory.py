"""Worker memory: RSS of `manage.py runworker liquidations` before and after 1M events.

Production mode (PostgreSQL + Redis). The exchange (bench.loadgen, its own process)
sends the events in chunks as fast as the worker takes them; RSS is read from /proc
after a warm-up (the baseline: everything imported, caches and pools filled) and after
each chunk. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import orjson
import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import procs  # noqa: E402

WARMUP = 20_000


def stored(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM liquidations_liquidation").fetchone()
        return row[0]


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

    def feed(count: int, start_ms: int, seed: int, target: int) -> None:
        command(f"prep {count} {start_ms} {seed}", "ready")
        command("go", "sent")
        deadline = time.monotonic() + 300
        while stored(url) < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker stored {stored(url)} of {target}")
            time.sleep(0.2)

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
            start_ms = int(time.time() * 1000) - 10 * 86_400_000
            # bench_frames adds 2 % duplicates, which the worker skips: count unique rows.
            total = 0
            feed(WARMUP, start_ms, 1, WARMUP)
            total += WARMUP
            start_ms += 10 * WARMUP
            time.sleep(2)
            before = procs.rss_bytes(worker.pid)
            trace.append({"events": 0, "rss": before})
            started = time.perf_counter()
            done = 0
            seed = 2
            while done < args.events:
                chunk = min(args.chunk, args.events - done)
                total += chunk
                feed(chunk, start_ms, seed, total)
                start_ms += 10 * chunk
                seed += 1
                done += chunk
                trace.append({"events": done, "rss": procs.rss_bytes(worker.pid)})
            elapsed = time.perf_counter() - started
            time.sleep(2)
            after = procs.rss_bytes(worker.pid)
    finally:
        exchange.stdin.write("quit\n")
        exchange.stdin.close()
        exchange.wait(timeout=10)
        procs.pg_drop(f"{procs.DB_PREFIX}_memory")
    return {
        "events": args.events,
        "duplicates_sent": args.events // 50,
        "seconds": elapsed,
        "events_per_s": args.events / elapsed,
        "rss_before": before,
        "rss_after": after,
        "growth": (after - before) / before,
        "trace": trace,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=100_000)
    args = parser.parse_args()
    sys.stdout.write(orjson.dumps(main(args)).decode() + "\n")
