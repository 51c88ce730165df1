"""A loopback TCP proxy in front of a real service, to cut it and bring it back in drills.

Fault tests and scripts/fault_drill.py put one in front of PostgreSQL or Redis and point
the app at it: stop() refuses new connections and resets the open ones, as a crashed or
unreachable server would; start() listens again on the same port. The real service is
never touched.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

BUFFER = 65536


class TcpProxy:
    """Forward connections from 127.0.0.1:port to target; stop() and start() at will."""

    def __init__(self, target_host: str, target_port: int, *, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.accepted = 0

    @property
    def running(self) -> bool:
        return self._listener is not None

    def start(self) -> TcpProxy:
        """Listen (again) on 127.0.0.1:port (a free port the first time if port is 0)."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Refuse new connections and reset every open one (the service "goes away")."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for sock in connections:
            _cut(sock)  # its pump thread wakes up and closes it

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _cut(client)
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile
                    for sock in (client, upstream):
                        _cut(sock)
                        sock.close()
                    return
                self._connections |= {client, upstream}
                self.accepted += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy one direction; at its end cut both ways, then close the source."""
        try:
            while data := source.recv(BUFFER):
                sink.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._connections -= {source, sink}
        _cut(source)
        _cut(sink)  # wakes the other direction's thread, which closes the sink
        source.close()


def _cut(sock: socket.socket) -> None:
    """Shut a socket down both ways, resetting (RST) rather than closing politely.

    shutdown() also wakes a thread blocked reading it (close() alone would not).
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
