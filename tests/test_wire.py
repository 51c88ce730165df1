"""Frames written straight to a daphne socket (liquidations.wire), against real sockets.

The end-to-end proof (a real daphne, a stalled viewer that reads again, rows in order)
is in test_fanout_hub. Here one Twisted TCP transport on a socket pair, driven by hand,
makes the ordering case deterministic: bytes Twisted still holds must go out first.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections import deque
from types import SimpleNamespace

import pytest
from autobahn.websocket.protocol import TrafficStats, WebSocketProtocol
from twisted.internet import tcp
from twisted.internet.testing import MemoryReactor
from websockets.frames import Frame, Opcode

from liquidations.live import wire
from liquidations.live.wire import DirectSocket, direct_socket, text_frame

OPEN = WebSocketProtocol.STATE_OPEN


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_text_frame_is_what_websockets_would_send(size):
    text = "x" * size  # the length boundaries are in bytes: 125/126, 65535/65536
    expected = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
    assert text_frame(text) == expected
    text = "€" * (size // 3 + 1)  # UTF-8: three bytes each
    assert text_frame(text) == Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def test_only_daphne_sends_are_written_directly():
    async def send(message):  # another ASGI server's send
        pass

    assert direct_socket(send) is None
    assert direct_socket(functools.partial(send)) is None
    assert direct_socket(functools.partial(asyncio.sleep, 0)) is None


def _daphne_send(transport) -> functools.partial:
    """The send callable daphne gives an application, for a socket on this transport."""
    from daphne.server import Server
    from daphne.ws_protocol import WebSocketProtocol as DaphneProtocol

    protocol = DaphneProtocol()
    protocol.transport = transport
    protocol.state, protocol.send_queue = OPEN, deque()
    protocol._perMessageCompress, protocol.trafficStats = None, TrafficStats()
    return functools.partial(Server(None, endpoints=["tcp:port=0"]).handle_reply, protocol)


def test_a_daphne_socket_missing_what_the_fast_path_reads_takes_the_asgi_send(caplog, monkeypatch):
    pair = _Pair()
    try:
        direct = direct_socket(_daphne_send(pair.transport))
        assert isinstance(direct, DirectSocket) and direct.transport is pair.transport
        # A Twisted release that renamed its buffer: no fast path, and the log says why.
        del pair.transport._tempDataBuffer
        monkeypatch.setattr(wire, "_reported", False)
        with caplog.at_level(logging.INFO, logger="liquidations.wire"):
            assert direct_socket(_daphne_send(pair.transport)) is None
        assert "ASGI send: no _tempDataBuffer here" in caplog.text
    finally:
        pair.close()


class _Pair:
    """A Twisted TCP transport on one end of a socket pair; the test reads the other."""

    def __init__(self) -> None:
        server, self.peer = socket.socketpair()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self.peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.peer.settimeout(5)
        self.reactor = MemoryReactor()
        self.protocol = SimpleNamespace(
            state=OPEN, send_queue=deque(), _perMessageCompress=None, trafficStats=TrafficStats()
        )
        self.transport = tcp.Connection(server, self.protocol, reactor=self.reactor)
        self.transport.connected = True
        self.direct = DirectSocket(self.protocol, self.transport, OPEN)

    def pending(self) -> int:
        """Bytes Twisted holds for the socket (not yet handed to the kernel)."""
        return self.transport._tempDataLen + len(self.transport.dataBuffer) - self.transport.offset

    def read_all(self, size: int) -> bytes:
        """Read size bytes, letting Twisted write its buffer as the reactor would."""
        data = b""
        while len(data) < size:
            if self.transport in self.reactor.writers:
                self.transport.doWrite()
            data += self.peer.recv(65536)
        return data

    def close(self) -> None:
        self.transport.socket.close()
        self.peer.close()


def test_a_frame_never_overtakes_bytes_twisted_still_holds():
    pair = _Pair()
    try:
        frames = [text_frame(f"frame {n} " + "x" * 3000) for n in range(200)]
        written = 0
        # Fill the kernel's buffers; the rest of a partial send waits in Twisted.
        while not pair.pending():
            assert pair.direct.write(frames[written])
            written += 1
        assert pair.transport in pair.reactor.writers  # Twisted will write it when it can
        # The reader frees room in the kernel, but Twisted has not written yet: the next
        # frame must queue behind Twisted's bytes, not go to the socket first.
        drained = pair.peer.recv(65536)
        for frame in frames[written:]:
            assert pair.direct.write(frame)
        assert pair.pending() > len(frames[-1])
        stream = drained + pair.read_all(sum(map(len, frames)) - len(drained))
        assert stream == b"".join(frames)
        assert pair.protocol.trafficStats.outgoingOctetsWireLevel == len(stream)
        # Once Twisted's buffer is empty, frames go straight out again.
        assert pair.transport not in pair.reactor.writers
        assert pair.direct.write(frames[0]) and not pair.pending()
        assert pair.peer.recv(65536) == frames[0]
    finally:
        pair.close()


@pytest.mark.parametrize(
    "change",
    [
        lambda pair: setattr(pair.protocol, "state", WebSocketProtocol.STATE_CLOSING),
        lambda pair: pair.protocol.send_queue.append((b"autobahn's own", False)),
        lambda pair: setattr(pair.protocol, "_perMessageCompress", object()),
        lambda pair: setattr(pair.transport, "disconnecting", True),
    ],
    ids=["closing", "autobahn-queue", "compression", "disconnecting"],
)
def test_anything_but_an_open_plain_socket_is_left_to_the_asgi_send(change):
    pair = _Pair()
    try:
        change(pair)
        assert pair.direct.write(text_frame("row")) is False
        assert not pair.pending()
        pair.peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            pair.peer.recv(10)
    finally:
        pair.close()


def test_a_peer_that_went_away_is_left_to_the_asgi_send():
    pair = _Pair()
    try:
        pair.peer.close()  # a crashed browser: the next send fails (EPIPE)
        # False: daphne's own send path then finds the error and closes the connection.
        assert pair.direct.write(text_frame("row")) is False
        assert not pair.pending()
    finally:
        pair.transport.socket.close()
