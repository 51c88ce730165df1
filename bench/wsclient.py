"""A minimal WebSocket client (asyncio Protocol) for opening 1,000 viewer sockets cheaply.

The bench's instrument, not app code: a full client library costs more CPU per frame than
the server under test on this 2-core machine, which would measure the bench, not the app.
It does the RFC 6455 handshake, reassembles (unmasked) server frames, answers pings, and
hands each complete text/binary message with its arrival time to `on_message`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Callable
from urllib.parse import urlsplit


class HandshakeFailed(ConnectionError):
    pass


class MiniWebSocket(asyncio.Protocol):
    def __init__(self, *, path: str, host: str, origin: str | None, on_message: Callable) -> None:
        self.path = path
        self.host = host
        self.origin = origin
        self.on_message = on_message
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._handshaken = False
        self._fragments: list[bytes] = []
        self.messages = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {self.path} HTTP/1.1",
            f"Host: {self.host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if self.origin:
            lines.append(f"Origin: {self.origin}")
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buf = self._buffer
        buf += data
        if not self._handshaken:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            del buf[: end + 4]
            if b" 101 " not in status + b" ":
                if not self.opened.done():
                    self.opened.set_exception(HandshakeFailed(status.decode(errors="replace")))
                self.transport.close()
                return
            self._handshaken = True
            if not self.opened.done():
                self.opened.set_result(None)
        self._parse(now)

    def _parse(self, now: float) -> None:
        buf = self._buffer
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                (length,) = struct.unpack_from("!H", buf, pos + 2)
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                (length,) = struct.unpack_from("!Q", buf, pos + 2)
                head = 10
            if size - pos < head + length:
                break
            # One copy (slicing the bytearray first would make two of a 40 kB frame).
            with memoryview(buf) as view:
                payload = bytes(view[pos + head : pos + head + length])
            pos += head + length
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if opcode in (0x1, 0x2, 0x0):
                self._fragments.append(payload)
                if fin:
                    message = b"".join(self._fragments)
                    self._fragments = []
                    self.messages += 1
                    self.on_message(message, now)
            elif opcode == 0x9:  # ping -> pong
                self._send(0xA, payload)
            elif opcode == 0x8:  # close
                self._send(0x8, payload[:2])
                self.transport.close()
        del buf[:pos]

    def _send(self, opcode: int, payload: bytes) -> None:
        # Client frames must be masked; an all-zero mask leaves the payload as is.
        header = bytes([0x80 | opcode])
        length = len(payload)
        if length < 126:
            header += bytes([0x80 | length])
        elif length < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", length)
        self.transport.write(header + b"\x00\x00\x00\x00" + payload)

    def close(self) -> None:
        if self.transport and not self.transport.is_closing():
            try:
                self._send(0x8, struct.pack("!H", 1000))
            finally:
                self.transport.close()

    def connection_lost(self, exc) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or HandshakeFailed("connection closed"))
        if not self.closed.done():
            self.closed.set_result(None)


async def connect(url: str, *, on_message: Callable, origin: str | None = None) -> MiniWebSocket:
    """Open one socket and wait for the handshake; raises HandshakeFailed or OSError."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: MiniWebSocket(path=path, host=host, origin=origin, on_message=on_message),
        parts.hostname,
        parts.port,
    )
    await protocol.opened
    return protocol
