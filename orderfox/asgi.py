"""ASGI entry point: HTTP, browser WebSockets, and the worker's channel."""

from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orderfox.settings")
# Django must be set up before consumers (and their models) are imported.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from liquidations.ingest.worker import worker_application  # noqa: E402
from liquidations.live.origin import SameOriginValidator  # noqa: E402
from liquidations.live.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # The live feed is public: no session or user on its sockets. Channels'
        # AuthMiddlewareStack cost a database hop per connect (the user lookup, queued
        # in the one shared sync thread with 1,000 viewers connecting) and its session
        # wrapper ~8 % of a daphne process in every frame sent (py-spy, make bench).
        # Only the site's own pages may open one: same scheme, host and port.
        "websocket": SameOriginValidator(URLRouter(websocket_urlpatterns)),
        "channel": worker_application(),
    }
)


# Everything loaded so far (Django, the URL conf, modules) lives as long as the process:
# out of the collector's way. Full collections in a serve_web process during the scale
# bench paused it 59-91 ms (timed with gc.callbacks), 5-12 ms once frozen. (An A/B of
# the pages' p95 could not separate it from this machine's noise: docs/performance.md.)
gc.freeze()
