"""Writes: events the database refused, kept with their raw frame and the error."""

from __future__ import annotations

from django.utils import timezone

from ..models import DeadLetter

MAX_ERROR_LENGTH = 1000


def dead_letter_store(*, venue: str, frame: bytes | str, error: str) -> DeadLetter:
    """Keep one refused event's raw frame (as text) and what the database said."""
    text = frame.decode("utf-8", errors="backslashreplace") if isinstance(frame, bytes) else frame
    # The frame is JSON, which escapes control characters; a raw NUL still must not
    # stop the dead letter itself from being stored.
    return DeadLetter.objects.create(
        created_at=timezone.now(),
        venue=venue,
        frame=text.replace("\x00", "\\u0000"),
        error=error.replace("\x00", "\\u0000")[:MAX_ERROR_LENGTH],
    )
