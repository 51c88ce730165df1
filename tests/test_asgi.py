"""The ASGI entry point."""

from __future__ import annotations

import gc
import importlib


def test_the_app_moves_what_it_loaded_out_of_the_collectors_way():
    # Full collections walking Django's import-time objects were the pages' p95 tails.
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    import orderfox.asgi

    importlib.reload(orderfox.asgi)
    assert gc.get_freeze_count() > 1000
