"""What the ingest reports of itself: counters and state, sent to `liquidations status`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class IngestStatus:
    state: str = "stopped"
    url: str = ""
    connected_since: datetime | None = None
    last_event_at: datetime | None = None
    events_received: int = 0
    events_stored: int = 0
    duplicates_skipped: int = 0
    malformed_dropped: int = 0
    reconnects: int = 0
    symbols_synced_at: datetime | None = None
    # Stored rows the database refused (kept in the DeadLetter table), since start.
    dead_letters: int = 0
    # kind of fault -> its last occurrence (liquidations.logs.LastError), shared with
    # the ingest's RateLimitedLog.
    last_errors: dict[str, Any] = field(default_factory=dict)

    def as_message(self) -> dict:
        """Return the status as plain values (channel-layer messages are msgpack)."""
        data = asdict(self)
        for key in ("connected_since", "last_event_at", "symbols_synced_at"):
            data[key] = data[key].isoformat() if data[key] else None
        data["last_errors"] = self.errors_as_dicts()
        return data

    def errors_as_dicts(self) -> dict[str, dict[str, str]]:
        return {kind: error.as_dict() for kind, error in sorted(self.last_errors.items())}
