"""Who watches which market stream: reference counts with leases and a grace period.

Each web process's market hub counts its own viewers and tells the worker the set of
streams they watch (a snapshot, so a lost or repeated message corrects itself). Here a
stream is referenced by the hubs watching it; each reference is a lease the hub renews
every few seconds, so a web process that dies stops counting once its lease runs out.
A stream nobody references is let go after a grace period: a viewer who reloads the
page, or comes back within it (in any web process), costs no new SUBSCRIBE.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class WatchChanges:
    """What one update means upstream: streams to subscribe and to let go."""

    subscribe: list[str] = field(default_factory=list)
    unsubscribe: list[str] = field(default_factory=list)
    # Streams a hub started watching (it needs their current state).
    announce: list[str] = field(default_factory=list)


@dataclass
class MarketWatchers:
    """Leases of web hubs on streams, and the streams held for their grace period."""

    lease_seconds: float
    grace_seconds: float
    # stream → hub → (lease expiry, viewers in that hub)
    leases: dict[str, dict[str, tuple[float, int]]] = field(default_factory=dict)
    # Subscribed streams nobody watches, and since when.
    idle_since: dict[str, float] = field(default_factory=dict)

    @property
    def subscribed(self) -> set[str]:
        return set(self.leases) | set(self.idle_since)

    def viewers(self, stream: str) -> int:
        return sum(viewers for _expiry, viewers in self.leases.get(stream, {}).values())

    def watch(self, *, hub: str, streams: dict[str, int], now: float) -> WatchChanges:
        """Take a hub's complete set of watched streams (with its viewer counts)."""
        changes = WatchChanges()
        expiry = now + self.lease_seconds
        for stream, viewers in streams.items():
            hubs = self.leases.get(stream)
            if hubs is None:
                hubs = self.leases[stream] = {}
                if self.idle_since.pop(stream, None) is None:
                    changes.subscribe.append(stream)
            if hub not in hubs:
                changes.announce.append(stream)
            hubs[hub] = (expiry, viewers)
        for stream in [s for s, hubs in self.leases.items() if hub in hubs and s not in streams]:
            self._drop(stream, hub, now)
        return changes

    def expire(self, *, now: float) -> WatchChanges:
        """Drop leases not renewed in time; let go of streams idle past the grace period."""
        for stream, hubs in list(self.leases.items()):
            for hub in [h for h, (expiry, _v) in hubs.items() if expiry <= now]:
                self._drop(stream, hub, now)
        changes = WatchChanges()
        for stream, since in list(self.idle_since.items()):
            if now - since >= self.grace_seconds:
                del self.idle_since[stream]
                changes.unsubscribe.append(stream)
        return changes

    def _drop(self, stream: str, hub: str, now: float) -> None:
        hubs = self.leases[stream]
        hubs.pop(hub, None)
        if not hubs:
            del self.leases[stream]
            self.idle_since[stream] = now
