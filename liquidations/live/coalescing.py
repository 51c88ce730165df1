"""How long a web process lets row batches pile up before its next fan-out round.

A round costs about one send per viewer whatever it carries, so what a process can write
is rounds per second, and a fixed clock is wrong both ways: on a quiet day it makes every
viewer wait for nothing, and it knows nothing of how many viewers this process has. The
window is sized here, per process, from what its rounds cost:

- each round is timed (building its frames and writing them to every viewer, not the
  moments it yields to other tasks) and the cost is averaged over the last rounds;
- the next round may start `cost / budget` after the previous one started, so writing
  frames takes at most `budget` of the process's time (LIVE_FANOUT_BUDGET). A message
  arriving later than that goes out at once: a quiet process never waits;
- the window never exceeds LIVE_FANOUT_MAX_WINDOW: past it, the process gets busier
  instead of the feed later.

Nothing is dropped or reordered by waiting: the hub merges what arrived in arrival order
and the 50-row cap is the only thing that replaces rows. Once a minute the window and its
reason are logged (`report()`), and /health shows them for the process that answers.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# Weight of the newest round in the cost average: about the last 10 rounds count.
COST_WEIGHT = 0.1
REPORT_SECONDS = 60.0


@dataclass(frozen=True)
class WindowReport:
    """What an operator reads: the window now, why, and what the last interval held."""

    viewers: int
    window_ms: float
    round_ms: float
    budget: float
    rounds_per_s: float
    frames_per_s: float
    held_share: float  # of the interval's rounds, those that waited for the window
    held_mean_ms: float  # their mean wait
    reason: str

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "viewers": self.viewers,
            "window_ms": round(self.window_ms, 2),
            "round_ms": round(self.round_ms, 3),
            "budget": self.budget,
            "rounds_per_s": round(self.rounds_per_s, 1),
            "frames_per_s": round(self.frames_per_s),
            "held_share": round(self.held_share, 3),
            "held_mean_ms": round(self.held_mean_ms, 2),
            "reason": self.reason,
        }

    def line(self) -> str:
        return (
            f"Fan-out: {self.viewers} viewers, {self.rounds_per_s:.0f} rounds/s, "
            f"{self.frames_per_s:,.0f} frames/s; window {self.window_ms:.1f} ms "
            f"({self.reason})"
        )


class CoalescingWindow:
    """One hub's window: how long to hold the next round, from what rounds cost.

    Times are the caller's clock (the event loop's), in seconds, so tests drive it with
    plain numbers.
    """

    def __init__(
        self, *, budget: float, max_window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not 0 < budget <= 1:
            raise ValueError(f"the fan-out budget is a share of the process: 0 < {budget} <= 1")
        if max_window < 0:
            raise ValueError(f"the longest window cannot be negative: {max_window}")
        self.budget = budget
        self.max_window = max_window
        self.cost = 0.0  # seconds per round, averaged
        self._last_start = -math.inf
        self._clock = clock
        self._interval = _Interval(clock())

    @property
    def window(self) -> float:
        """Seconds from one round's start before the next may start (0: none needed)."""
        spacing = self.cost / self.budget
        return min(self.max_window, spacing) if spacing > self.cost else 0.0

    def hold(self, now: float) -> float:
        """Seconds to wait before a round that could start now."""
        return max(0.0, self._last_start + self.window - now)

    def round_done(
        self, *, started: float, ended: float, frames: int, held: float, yielded: float = 0.0
    ) -> None:
        """Account for a round that started at `started` after waiting `held` seconds.

        yielded: seconds within the round given to other tasks (not the round's cost).
        """
        cost = max(0.0, ended - started - yielded)
        self.cost = cost if self._last_start == -math.inf else _average(self.cost, cost)
        self._last_start = started
        self._interval.add(frames=frames, held=held)

    def report(self, *, viewers: int, restart: bool = False) -> WindowReport:
        """The window now and the rounds since the interval began (restart: begin anew)."""
        now = self._clock()
        interval = self._interval
        if restart:
            self._interval = _Interval(now)
        elapsed = max(now - interval.started, 1e-9)
        rounds = interval.rounds
        held_share = interval.held_rounds / rounds if rounds else 0.0
        return WindowReport(
            viewers=viewers,
            window_ms=self.window * 1000,
            round_ms=self.cost * 1000,
            budget=self.budget,
            rounds_per_s=rounds / elapsed,
            frames_per_s=interval.frames / elapsed,
            held_share=held_share,
            held_mean_ms=(interval.held / interval.held_rounds * 1000)
            if interval.held_rounds
            else 0.0,
            reason=self._reason(held_share),
        )

    def _reason(self, held_share: float) -> str:
        budget = f"{self.budget:.0%}"
        if self.window == 0.0:
            return f"no window: a round takes {self.cost * 1000:.2f} ms, budget {budget}"
        limit = " (the longest allowed)" if self.window >= self.max_window else ""
        spacing = (
            f"a round takes {self.cost * 1000:.2f} ms, so rounds start "
            f"{self.window * 1000:.1f} ms apart{limit} to keep writing within {budget} "
            "of the process"
        )
        if held_share < 0.01:
            return f"quiet: messages come further apart than the window; {spacing}"
        return f"load: {held_share:.0%} of rounds waited; {spacing}"


@dataclass
class _Interval:
    started: float
    rounds: int = 0
    frames: int = 0
    held_rounds: int = 0
    held: float = 0.0

    def add(self, *, frames: int, held: float) -> None:
        self.rounds += 1
        self.frames += frames
        if held > 0:
            self.held_rounds += 1
            self.held += held


def _average(previous: float, newest: float) -> float:
    return previous + COST_WEIGHT * (newest - previous)
