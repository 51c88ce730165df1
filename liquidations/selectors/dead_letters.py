"""Reads: how many events the database refused (the DeadLetter table)."""

from __future__ import annotations

from ..models import DeadLetter


def dead_letter_count() -> int:
    return DeadLetter.objects.count()
