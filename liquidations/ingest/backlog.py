"""Raw upstream frames waiting to be parsed and stored, bounded in bytes."""

from __future__ import annotations

import asyncio
from collections import deque

# Raw frames received and not yet stored, in bytes. Past this bound the upstream socket is
# not read until the writer has stored half of it: a burst or a database outage then
# waits in TCP buffers and at the exchange (flow control), not in this process. Binance
# frames are ~185 bytes (~220 on a combined stream; a real capture), so 16 MiB holds
# 75,000-90,000 events: about three minutes of the whole market at its ~440/s ceiling.
MAX_BACKLOG_BYTES = 16 * 2**20


class Backlog:
    """Raw frames waiting to be stored, oldest first, bounded in bytes.

    put() never refuses a frame (it has been read off the socket: refusing would lose
    it); past max_bytes it says the backlog is full, and the reader waits for drained(),
    which completes once the writer has taken the backlog down to half the bound.
    """

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.closed = False
        self._frames: deque[bytes] = deque()
        self._arrived = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: bytes) -> bool:
        """Keep the frame; return whether the backlog is now full."""
        self._frames.append(frame)
        self.size += len(frame)
        self._arrived.set()
        if self.size < self.max_bytes:
            return False
        self._drained.clear()
        return True

    async def drained(self) -> None:
        """Wait until the backlog is at most half full."""
        await self._drained.wait()

    async def take(self, limit: int) -> list[bytes]:
        """Wait for frames and return up to limit of them; [] once closed and empty."""
        while not self._frames:
            if self.closed:
                return []
            self._arrived.clear()
            await self._arrived.wait()
        return self.take_nowait(limit)

    def take_nowait(self, limit: int) -> list[bytes]:
        frames = self._frames
        taken = [frames.popleft() for _ in range(min(limit, len(frames)))]
        self.size -= sum(map(len, taken))
        if self.size <= self.max_bytes // 2:
            self._drained.set()
        return taken

    def close(self) -> None:
        """No more frames will come: take() returns what is left, then []."""
        self.closed = True
        self._arrived.set()

    def reopen(self) -> None:
        self.closed = False
