"""The markup around rows in a socket frame, from the `_rows_oob.html` partial.

The wrapper is rendered once and split around the rows, so a frame is two string
concatenations (the hub builds one per distinct filter per round) and the markup still
lives in a template.
"""

from __future__ import annotations

import functools

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

_ROWS = "\x00rows\x00"


@functools.cache
def rows_wrapper() -> tuple[str, str]:
    """Return the (opening, closing) markup of the oob block that rows are prepended with."""
    html = render_to_string("liquidations/_rows_oob.html", {"rows_html": mark_safe(_ROWS)})
    opening, closing = html.strip().split(_ROWS)
    return opening, closing


def rows_oob(rows_html: str) -> str:
    """Return rendered rows (autoescaped `_row.html` output) wrapped as one oob swap."""
    opening, closing = rows_wrapper()
    return opening + rows_html + closing
