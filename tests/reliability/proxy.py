"""A small TCP proxy that cuts a real service off: the fault the client sees is a real network fault.

moto keeps its data in memory, so S3 is made unreachable by putting this in front of it instead of
stopping it. While the proxy is down it still accepts each connection, then resets it at once (RST):
the listening port stays ours, so no other process on the machine can take it between "down" and "up"
(closing and re-binding the port would let one). The client sees "connection reset by peer".
"""

from __future__ import annotations

import socket
import struct
import threading
import time


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server((host, 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._up = threading.Event()
        self._up.set()
        self._lock = threading.Lock()
        self.refused = 0
        """Connections reset while down."""
        self.forwarded = 0
        self._refuse_budget = 0
        self.first_refusal_at: float | None = None
        self.first_forward_after_refusal_at: float | None = None
        self._closed = False
        threading.Thread(target=self._accept_loop, name=f"proxy:{self.port}", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def down(self) -> None:
        self._up.clear()

    def refuse_next(self, count: int) -> None:
        """Down for exactly the next ``count`` connections, then up by itself: an outage that ends
        at a known point of the client's retries, whatever the machine's speed."""
        with self._lock:
            self._refuse_budget = count
        self._up.clear()

    def recovered_after(self) -> float | None:
        """Seconds from the first refused connection to the first one served after it."""
        if self.first_refusal_at is None or self.first_forward_after_refusal_at is None:
            return None
        return self.first_forward_after_refusal_at - self.first_refusal_at

    def up(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                # SO_LINGER 0: close sends RST instead of FIN, the way a refused/reset connection looks.
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                with self._lock:
                    self.refused += 1
                    self.first_refusal_at = self.first_refusal_at or time.monotonic()
                    if self._refuse_budget:
                        self._refuse_budget -= 1
                        if not self._refuse_budget:
                            self._up.set()
                continue
            with self._lock:
                self.forwarded += 1
                if self.first_refusal_at is not None and self.first_forward_after_refusal_at is None:
                    self.first_forward_after_refusal_at = time.monotonic()
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        self._forward(client, upstream)

    def _forward(self, client: socket.socket, upstream: socket.socket) -> None:
        """Client to upstream (the answers flow back on their own thread); a subclass may hold requests back."""
        _pipe(client, upstream)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        shut_down(source, sink)
        source.close()


def shut_down(*socks: socket.socket) -> None:
    """Shut both directions of each socket (the peer sees the end at once), whatever state it is in."""
    for sock in socks:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
