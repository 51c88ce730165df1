"""End-to-end latency: exchange frame sent → row received by viewers of the all-market page.

One driver process holds the exchange (bench.loadgen), a client connected directly to it
(the baseline) and every viewer socket (bench.wsclient), so all timestamps share one
clock. The app runs in the mode under test as real processes started here:

- embedded:   `manage.py serve` (SQLite, in-memory layer, worker inside daphne)
- production: `manage.py serve_web --processes N` (N daphne sharing the port) and
              `manage.py runworker liquidations`, on PostgreSQL + Redis

Each row is mapped back to its frame by its trade time (every generated event has a
unique T). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import sys
import tempfile
import time
from array import array
from collections.abc import Callable

import orjson
import uvloop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orderfox.settings")

from bench import procs  # noqa: E402
from bench.loadgen import EventFactory, LoadGen, iso_ms  # noqa: E402
from bench.wsclient import connect  # noqa: E402

FRAME_T = re.compile(rb'"T":(\d+)')
VIEWER_PATH = "/ws/liquidations/"
ROWS_FRAME = b'<tbody id="liquidation-rows"'  # templates/liquidations/_rows_oob.html
# A frame may go on after its rows with the worker status and the stats strip, whose
# "largest liquidation" carries a trade time too: only the rows count.
ROWS_END = b"</tbody>"  # its end
FRAME_ROW_CAP = 50  # liquidations.live.contracts.MAX_ROWS: rows per frame at most


class Frame:
    """One distinct rows frame of the cell: parsed once, however many viewers receive it."""

    __slots__ = ("message", "ts", "unmatched", "oldest", "newest", "arrivals")

    def __init__(self, message: bytes, expected: set[int], iso_to_t: dict[bytes, int]) -> None:
        self.message = message
        self.ts: list[int] = []
        self.unmatched = 0
        # bytes.split is C-speed; a regex over 40 kB frames x 10,000 frames/s was the
        # bench's own bottleneck.
        end = message.find(ROWS_END)
        for part in message[: end if end >= 0 else len(message)].split(b'datetime="')[1:]:
            t = iso_to_t.get(part[: part.find(b'"')])
            if t is None or t not in expected:
                self.unmatched += 1
                continue
            self.ts.append(t)
        self.oldest = min(self.ts) if self.ts else None
        self.newest = max(self.ts) if self.ts else 0
        self.arrivals = array("d")  # when each viewer received it


class Collector:
    """Latency samples and delivery counts of the current cell.

    Viewers of one daphne process with one filter get the very same frame, so each
    distinct frame is parsed once and only its arrival times are kept per viewer; the
    samples (arrival - sent, per row and viewer) are computed after the cell. Per frame
    the handler then costs a lookup and a comparison instead of a parse of every row:
    with 1,000 viewers the parse was a third of a core, taken from the app under test
    and delaying the reads whose times are the measurement.
    """

    def __init__(self) -> None:
        self.iso_to_t: dict[bytes, int] = {}
        self.sent_at: dict[int, float] = {}
        self.reset(set())

    def reset(self, expected: set[int]) -> None:
        self.expected = expected
        self.frames: dict[tuple, list[Frame]] = {}
        self.frames_received = 0
        self.baseline_samples = array("d")
        self.viewer_rows = 0
        self.baseline_rows = 0
        self.unmatched = 0
        self.superseded = 0
        self.first_t = min(expected) if expected else 0
        self.last_receive = time.perf_counter()

    def frame(self, message: bytes) -> Frame:
        """Return the parsed frame equal to message (compared in full: memcmp is cheap)."""
        first = message.find(b'datetime="')
        last = message.rfind(b'datetime="', 0, message.find(ROWS_END))
        key = (len(message), message[first : first + 40], message[last : last + 40])
        candidates = self.frames.setdefault(key, [])
        for frame in candidates:
            if frame.message == message:
                return frame
        frame = Frame(message, self.expected, self.iso_to_t)
        candidates.append(frame)
        return frame

    def viewer_samples(self) -> array:
        """Every (row, viewer) latency of the cell, in seconds."""
        samples = array("d")
        sent_at = self.sent_at
        for candidates in self.frames.values():
            for frame in candidates:
                sent = [sent_at[t] for t in frame.ts]
                for now in frame.arrivals:
                    samples.extend([now - s for s in sent])
        return samples

    def viewer(self) -> Callable[[bytes, float], None]:
        """Return one viewer socket's message handler (it remembers that viewer's newest T)."""
        newest = [0]

        def on_message(message: bytes, now: float) -> None:
            self.last_receive = now
            if not message.startswith(ROWS_FRAME):
                return  # worker status, stats strip: not rows (the strip has times too)
            frame = self.frame(message)
            frame.arrivals.append(now)
            self.frames_received += 1
            self.unmatched += frame.unmatched
            rows = len(frame.ts)
            self.viewer_rows += rows
            previous = newest[0]
            if frame.newest > previous:
                newest[0] = frame.newest
            if rows >= FRAME_ROW_CAP and frame.oldest is not None:
                # The consumer sends a batch's newest 50 rows (the table's size): the
                # batch's older rows, between the previous frame and this one, are
                # replaced on the page before they could be seen. Counted apart.
                self.superseded += max(0, frame.oldest - max(previous + 1, self.first_t))

        return on_message

    def on_baseline(self, message: bytes, now: float) -> None:
        for raw in FRAME_T.findall(message):
            t = int(raw)
            if t in self.expected:
                self.baseline_rows += 1
                self.baseline_samples.append(now - self.sent_at[t])


async def open_viewers(url: str, origin: str, count: int, collector: Collector) -> list:
    viewers = []
    for start in range(0, count, 50):
        batch = await asyncio.gather(
            *(
                connect(url, on_message=collector.viewer(), origin=origin)
                for _ in range(min(50, count - start))
            )
        )
        viewers.extend(batch)
    return viewers


async def run_cell(
    loadgen, factory, collector, *, rate, duration, viewers, drain, app=None
) -> dict:
    count = max(1, int(rate * duration))
    frames = factory.frames(count)
    for t, _ in frames:
        collector.iso_to_t[iso_ms(t).encode()] = t
    collector.reset({t for t, _ in frames})
    loadgen.sent_at = collector.sent_at
    cpu = procs.CpuMeter(app or {})
    sent_for = await loadgen.paced(frames, rate=rate)
    expected = count * viewers
    deadline = time.perf_counter() + drain
    while time.perf_counter() < deadline:
        done = collector.viewer_rows + collector.superseded
        if done >= expected and collector.baseline_rows >= count:
            break
        # Nothing arrived for 3 s: whatever is missing is not coming.
        if time.perf_counter() - collector.last_receive > 3.0:
            break
        await asyncio.sleep(0.05)
    cpu_used = cpu.result()
    app = procs.stats([s * 1000 for s in collector.viewer_samples()])
    base = procs.stats([s * 1000 for s in collector.baseline_samples])
    # Let a backlog clear before the next cell, so cells don't leak into each other.
    quiet_until = time.perf_counter() + drain
    while time.perf_counter() < quiet_until and time.perf_counter() - collector.last_receive < 1.0:
        await asyncio.sleep(0.1)
    return {
        "rate": rate,
        "viewers": viewers,
        "events": count,
        "send_seconds": round(sent_for, 3),
        "delivered": collector.viewer_rows / expected,
        "delivered_or_superseded": (collector.viewer_rows + collector.superseded) / expected,
        "rows_superseded": collector.superseded,
        "rows_received": collector.viewer_rows,
        "rows_expected": expected,
        "frames_per_viewer_per_s": round(
            collector.frames_received / viewers / max(sent_for, 1e-9), 1
        ),
        "distinct_frames": sum(len(c) for c in collector.frames.values()),
        "app_ms": app,
        "baseline_ms": base,
        "cpu": cpu_used,
        "added_p50_ms": (app["median"] - base["median"]) if app["n"] and base["n"] else None,
        "added_p99_ms": (app["p99"] - base["p99"]) if app["n"] and base["n"] else None,
    }


def start_app(mode: str, ps: procs.Processes, loadgen: LoadGen, args) -> tuple[int, dict]:
    """Start the app in `mode`; return its port and a description of what runs."""
    port = procs.free_port()
    upstream = {
        "BINANCE_WS_BASE_URL": loadgen.ws_base_url,
        "BINANCE_WS_PUBLIC_URL": loadgen.ws_public_url,
        "BINANCE_REST_BASE_URL": loadgen.rest_base_url,
        "LIQUIDATION_SYMBOLS": "",
    }
    if mode == "embedded":
        data_dir = tempfile.mkdtemp(prefix="orderfox-bench-embedded-")
        env = procs.app_env(ORDERFOX_DATA_DIR=data_dir, **upstream)
        procs.manage("migrate", "--no-input", env=env)
        web = ps.start("serve", [procs.PYTHON, "manage.py", "serve", "--port", str(port)], env=env)
        procs.wait_port(port, proc=web)
        return port, {"mode": mode, "database": "sqlite", "layer": "in-memory", "daphne": 1}
    url = procs.pg_create(f"{procs.DB_PREFIX}_e2e")
    procs.redis_flush()
    env = procs.app_env(database_url=url, redis=True, REDIS_CHANNEL_LAYER=args.layer, **upstream)
    procs.manage("migrate", "--no-input", env=env)
    ps.start("worker", [procs.PYTHON, "manage.py", "runworker", "liquidations"], env=env)
    web = ps.start(
        "web",
        [
            procs.PYTHON,
            "manage.py",
            "serve_web",
            "--processes",
            str(args.processes),
            "--port",
            str(port),
        ],
        env=env,
    )
    procs.wait_port(port, proc=web)
    return port, {
        "mode": mode,
        "database": "postgresql",
        "layer": args.layer,
        "daphne": args.processes,
    }


def plan(args) -> list[tuple[int, list[float]]]:
    """(viewers, rates) in rising viewer counts: --cells as given, else viewers × rates."""
    if not args.cells:
        return [(count, list(args.rates)) for count in sorted(args.viewers)]
    by_viewers: dict[int, list[float]] = {}
    for cell in args.cells:
        rate, _, count = cell.partition("x")
        by_viewers.setdefault(int(count), []).append(float(rate))
    return sorted(by_viewers.items())


async def main(args) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loadgen = LoadGen()
    await loadgen.start()
    collector = Collector()
    factory = EventFactory()
    cells = []
    with procs.Processes() as ps:
        port, setup = start_app(args.mode, ps, loadgen, args)
        try:
            await loadgen.wait_for_clients(1, timeout=30)
        except TimeoutError:
            raise RuntimeError(
                "the app's worker never connected to the exchange:\n"
                + "\n".join(ps.log_tail(p) for p in ps.procs)
            ) from None
        baseline = await connect(
            f"{loadgen.ws_base_url}/ws/!forceOrder@arr", on_message=collector.on_baseline
        )
        url = f"ws://127.0.0.1:{port}{VIEWER_PATH}"
        origin = f"http://127.0.0.1:{port}"
        viewers: list = []
        for count, rates in plan(args):
            viewers += await open_viewers(url, origin, count - len(viewers), collector)
            # Warm-up at a moderate rate: connections settle, caches fill; not measured.
            await run_cell(
                loadgen, factory, collector, rate=200, duration=1, viewers=count, drain=5
            )
            for rate in rates:
                duration = args.duration if rate < 1000 else args.duration / 2
                cell = await run_cell(
                    loadgen,
                    factory,
                    collector,
                    rate=rate,
                    duration=duration,
                    viewers=count,
                    drain=args.drain,
                    app=ps.pids(),
                )
                cell["duration_s"] = duration
                cells.append(cell)
                print(
                    f"  {args.mode:<10} {setup.get('layer')} {rate:>5} ev/s x {count:>4} viewers: "
                    f"p50 {cell['app_ms']['median']} ms p99 {cell['app_ms']['p99']} ms, "
                    f"delivered {cell['delivered']:.4f}",
                    file=sys.stderr,
                    flush=True,
                )
        for viewer in viewers:
            viewer.close()
        baseline.close()
        await asyncio.sleep(0.5)
    await loadgen.stop()
    if args.mode == "production":
        procs.pg_drop(f"{procs.DB_PREFIX}_e2e")
        procs.redis_flush()
    return {**setup, "cells": cells}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["embedded", "production"], required=True)
    parser.add_argument("--layer", choices=["pubsub", "core"], default="pubsub")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--viewers", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 440, 2000])
    parser.add_argument(
        "--cells",
        nargs="+",
        metavar="RATExVIEWERS",
        help="e.g. 50x20 440x200 (not viewers × rates)",
    )
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--drain", type=float, default=10.0)
    args = parser.parse_args()
    # The driver's event loop is uvloop: its 1,000 viewer sockets share the app's two
    # cores, and uvloop's reads cost it about half of asyncio's per frame (README, Performance).
    result = uvloop.run(main(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
