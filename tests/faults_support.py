"""A TCP link a fault test puts between the service and its PostgreSQL, to take the database away as a stopped
server or an unreachable host would, at a moment of the test's choosing (also in the middle of a transaction),
and to bring it back."""

from __future__ import annotations

import socket
import struct
import threading


class DatabaseLink:
    """Listens on a free loopback port and forwards each connection to ``upstream``, while ``up``.

    - ``down()``: every open connection is cut, and a new one is reset at once (a stopped server).
    - ``unresponsive()``: every open connection is cut, and a new one is accepted but never answered (a host
      that takes the connection and says nothing: only a connect timeout ends the wait).
    - ``down_after(n)``: up until ``n`` more bytes have gone towards the server, then down (the cut lands inside
      whatever the client is sending then).
    - ``up()``: new connections are forwarded again.
    """

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._state = "up"
        self._budget: int | None = None  # bytes still allowed towards the server before going down
        self._open: list[socket.socket] = []  # both ends of every forwarded connection, and the held ones
        threading.Thread(target=self._accept, daemon=True, name="database-link").start()

    def up(self) -> None:
        with self._lock:
            self._state, self._budget = "up", None
            self._cut_all()

    def down(self) -> None:
        with self._lock:
            self._state, self._budget = "down", None
            self._cut_all()

    def unresponsive(self) -> None:
        with self._lock:
            self._state, self._budget = "unresponsive", None
            self._cut_all()

    def down_after(self, n_bytes: int) -> None:
        with self._lock:
            self._budget = n_bytes

    def close(self) -> None:
        self._listener.close()
        self.down()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            with self._lock:
                if self._state == "down":
                    _reset(client)
                    continue
                self._open.append(client)
                if self._state == "unresponsive":
                    continue  # held open, never answered
                try:
                    server = socket.create_connection(self.upstream, timeout=5)
                except OSError:
                    self._open.remove(client)
                    _reset(client)
                    continue
                server.settimeout(None)
                self._open.append(server)
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, towards_server: bool) -> None:
        try:
            while data := source.recv(65536):
                if towards_server and not self._spend(len(data)):
                    self.down()  # these bytes never reach the server
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                for end in (source, sink):
                    if end in self._open:
                        self._open.remove(end)
                        _close(end)

    def _spend(self, n_bytes: int) -> bool:
        with self._lock:
            if self._budget is None:
                return True
            self._budget -= n_bytes
            return self._budget >= 0

    def _cut_all(self) -> None:
        for end in self._open:
            _close(end)
        self._open.clear()


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset, as a port nobody listens on answers."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
