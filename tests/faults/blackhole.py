"""A TCP proxy the fault tests put between a process and its Redis or PostgreSQL, to cut the network.

``pause()`` is a partition as a client sees it: nothing more is forwarded either way and no
connection is closed; new connections are accepted (by the kernel, as a half-dead middlebox or a
TCP stack that is up would) and get nothing. The bytes sent meanwhile stay in the sockets' buffers,
as unacknowledged segments stay in flight on a cut network, and ``heal()`` forwards them: what a
client gave up on may still reach the server, as after a real partition. Keepalive probes are
answered by this process's kernel, so only the clients' own timeouts can notice the cut, which is
what the tests measure.

One thread runs a selector loop over every socket; ``close()`` ends it and every connection.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from types import TracebackType

#: interface the proxy listens on (IPv4 loopback).
HOST = "127.0.0.1"
#: bytes read from a socket at a time.
CHUNK = 65536
#: seconds the loop waits for a socket to be ready before looking at its pause flag again.
TICK = 0.05


class BlackHoleProxy:
    """Forward ``127.0.0.1:<port>`` to ``target`` (host, port) until paused; heal to forward again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server((HOST, 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        #: the listener alone: what the loop waits on while paused (the held sockets stay readable).
        self._listening = selectors.DefaultSelector()
        self._listening.register(self._listener, selectors.EVENT_READ, None)
        #: each socket's peer (both directions of each proxied connection).
        self._peers: dict[socket.socket, socket.socket] = {}
        self._paused = threading.Event()
        self._closed = threading.Event()
        #: connections accepted while paused, connected upstream when healed (none is refused).
        self._waiting: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, name=f"blackhole-{self.port}", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def pause(self) -> None:
        """Stop forwarding, both ways, on every connection and on those still to come."""
        self._paused.set()

    def heal(self) -> None:
        """Forward again: what was held goes through."""
        self._paused.clear()

    def connections(self) -> int:
        """Proxied connections open now (each counted once)."""
        return len(self._peers) // 2 + len(self._waiting)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        for sock in [*self._peers, *self._waiting, self._listener]:
            sock.close()
        self._selector.close()
        self._listening.close()

    def _run(self) -> None:
        while not self._closed.is_set():
            if self._paused.is_set():
                if self._listening.select(TICK):
                    self._accept()
                continue
            while self._waiting:
                self._connect_upstream(self._waiting.pop())
            for key, _events in self._selector.select(TICK):
                if key.fileobj is self._listener:
                    self._accept()
                elif not self._paused.is_set():
                    self._forward(key.fileobj)  # type: ignore[arg-type]

    def _accept(self) -> None:
        try:
            client, _address = self._listener.accept()
        except BlockingIOError:
            return
        if self._paused.is_set():
            self._waiting.append(client)
        else:
            self._connect_upstream(client)

    def _connect_upstream(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()  # the server is down: the client sees its connection closed
            return
        for sock in (client, upstream):
            sock.setblocking(False)
        self._peers[client] = upstream
        self._peers[upstream] = client
        self._selector.register(client, selectors.EVENT_READ, None)
        self._selector.register(upstream, selectors.EVENT_READ, None)

    def _forward(self, source: socket.socket) -> None:
        destination = self._peers.get(source)
        if destination is None:
            return
        try:
            data = source.recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            try:
                destination.setblocking(True)
                destination.sendall(data)
                destination.setblocking(False)
                return
            except OSError:
                pass
        self._drop(source)

    def _drop(self, sock: socket.socket) -> None:
        peer = self._peers.pop(sock, None)
        for each in (sock, peer):
            if each is None:
                continue
            self._peers.pop(each, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(each)
            each.close()

    def __enter__(self) -> BlackHoleProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
