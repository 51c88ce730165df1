"""Live-feed frames written straight to a viewer's socket when daphne serves it.

The hub hands the same frame to hundreds of viewers per round. Through ASGI every one of
them takes daphne's reply path: autobahn frames and encodes the text again, Twisted
buffers the bytes, registers the socket with the event loop, writes it on the loop's next
pass and unregisters it (two epoll_ctl calls and a logging context per frame). That was
about 30 µs per viewer per frame, most of a daphne process's CPU at 1,000 viewers
(py-spy: Twisted's writer bookkeeping ~30 %, the send itself ~18 %, autobahn ~12 %).

Here the frame is encoded once per round (text_frame) and each viewer's copy goes out as
one send() on its socket, which is what Twisted would end up doing, minus the detour.
Only when nothing else is pending for the socket: if Twisted or autobahn hold unsent bytes
for it, the frame is queued behind them through Twisted's own write, so order never
changes, and a slow reader's backlog is Twisted's as before (a partial send queues the
rest there). Anything but a plain TCP connection in the open state (TLS, compression, a
closing socket, another ASGI server) is not touched: the caller uses the ASGI send.
"""

from __future__ import annotations

import functools
import logging
import struct
import sys
from typing import Any

logger = logging.getLogger(__name__)

_FIN_TEXT = 0x81
# Said once per process, so the log tells which path the live feed takes.
_reported = False


def text_frame(text: str) -> bytes:
    """Return text as one unmasked, unfragmented WebSocket text frame (RFC 6455, 5.2)."""
    payload = text.encode("utf-8")
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", _FIN_TEXT, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", _FIN_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, size)
    return header + payload


class DirectSocket:
    """One daphne WebSocket connection, written to without the ASGI reply path."""

    __slots__ = ("protocol", "transport", "open_state")

    def __init__(self, protocol: Any, transport: Any, open_state: int) -> None:
        self.protocol = protocol
        self.transport = transport
        self.open_state = open_state

    def write(self, frame: bytes) -> bool:
        """Write one frame from text_frame(); False when the ASGI send must do it instead."""
        protocol = self.protocol
        transport = self.transport
        if (
            protocol.state != self.open_state
            or protocol.send_queue
            or protocol._perMessageCompress is not None
            or not transport.connected
            or transport.disconnecting
            or transport._writeDisconnected
        ):
            return False
        if transport._tempDataBuffer or transport.offset < len(transport.dataBuffer):
            transport.write(frame)  # behind what is already waiting for this socket
        else:
            try:
                sent = transport.socket.send(frame)
            except BlockingIOError:
                sent = 0
            except OSError:
                return False  # Twisted's own write finds the error and closes the socket
            if sent < len(frame):
                transport.write(frame[sent:])
        protocol.trafficStats.outgoingOctetsWireLevel += len(frame)
        if not _reported:
            _report("Live-feed frames go straight to daphne's sockets")
        return True


def _report(message: str) -> None:
    global _reported
    _reported = True
    logger.info(message)


# What write() reads; checked once per socket so that a daphne, autobahn or Twisted
# release that renames one turns the fast path off (logged) instead of failing sends.
_PROTOCOL_ATTRIBUTES = ("state", "send_queue", "_perMessageCompress", "trafficStats")
_TRANSPORT_ATTRIBUTES = (
    "connected",
    "disconnecting",
    "_writeDisconnected",
    "_tempDataBuffer",
    "offset",
    "dataBuffer",
    "socket",
)


def direct_socket(send: Any) -> DirectSocket | None:
    """Return the socket behind an ASGI send callable if daphne serves it over plain TCP.

    daphne passes each application `partial(server.handle_reply, protocol)`; anything
    else (another server, a test communicator, TLS terminated by daphne) gives None.
    """
    server_module = sys.modules.get("daphne.server")
    ws_module = sys.modules.get("daphne.ws_protocol")
    if server_module is None or ws_module is None or not isinstance(send, functools.partial):
        return None
    server = getattr(send.func, "__self__", None)
    if not isinstance(server, server_module.Server) or len(send.args) != 1:
        return None
    protocol = send.args[0]
    if not isinstance(protocol, ws_module.WebSocketProtocol):
        return None
    from twisted.internet import tcp

    transport = getattr(protocol, "transport", None)
    if not isinstance(transport, tcp.Connection) or getattr(transport, "TLS", False):
        return None
    missing = [name for name in _PROTOCOL_ATTRIBUTES if not hasattr(protocol, name)] + [
        name for name in _TRANSPORT_ATTRIBUTES if not hasattr(transport, name)
    ]
    if missing:
        if not _reported:
            _report(f"Live-feed frames take daphne's ASGI send: no {', '.join(missing)} here")
        return None
    return DirectSocket(protocol, transport, protocol.STATE_OPEN)
