"""UDP ports for legs, from the configured range: even ports only (RTCP takes the odd one).

A released port keeps its bound socket for a while, so that packets still arriving for a
finished call are counted and dropped rather than bounced, and it goes to the back of the
queue so a late sender of the old call does not land in the next one. "A while" is
`linger_s` (and at most `idle_limit` sockets): a PBX stops sending within seconds of its
hang-up, and sockets kept longer only made an idle server hold hundreds of descriptors
(bench/soak.py).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import OrderedDict, deque


class NoFreePort(RuntimeError):
    """Every port of the range is taken (or cannot be bound)."""


class PortPool:
    """Binds and hands out non-blocking UDP sockets on even ports of [port_min, port_max]."""

    def __init__(
        self,
        host: str,
        port_min: int,
        port_max: int,
        *,
        idle_limit: int = 256,
        linger_s: float = 30.0,
        rcvbuf: int | None = 1 << 20,
    ) -> None:
        self.host = host
        first = port_min + (port_min % 2)
        self._free: deque[int] = deque(range(first, port_max + 1, 2))
        # port -> (socket, when released), oldest first
        self._idle: OrderedDict[int, tuple[socket.socket, float]] = OrderedDict()
        self._idle_limit = idle_limit
        self._linger_s = linger_s
        self._rcvbuf = rcvbuf
        self._lock = threading.Lock()
        self.capacity = len(self._free)

    def acquire(self) -> tuple[int, socket.socket]:
        """A bound socket on a free port (NoFreePort when none can be had)."""
        with self._lock:
            for _ in range(len(self._free)):
                port = self._free.popleft()
                kept = self._idle.pop(port, None)
                if kept is not None:
                    return port, kept[0]
                try:
                    return port, self._bind(port)
                except OSError:
                    # Taken by another process: try it again after the others.
                    self._free.append(port)
            raise NoFreePort(f"no free UDP port in the range (capacity {self.capacity} legs)")

    def release(self, port: int, sock: socket.socket) -> list[socket.socket]:
        """Give a port back (its socket stays bound); returns sockets closed to stay in bounds."""
        with self._lock:
            self._free.append(port)
            self._idle[port] = (sock, time.monotonic())
            evicted: list[socket.socket] = []
            while len(self._idle) > self._idle_limit:
                _, (old, _) = self._idle.popitem(last=False)
                evicted.append(old)
            return evicted

    def expired(self, now: float | None = None) -> list[socket.socket]:
        """Take out the sockets released more than `linger_s` ago (monotonic clock); the
        caller closes them. Their ports stay free and are bound again when handed out."""
        now = time.monotonic() if now is None else now
        out: list[socket.socket] = []
        with self._lock:
            while self._idle:
                port, (sock, released) = next(iter(self._idle.items()))
                if now - released < self._linger_s:
                    break
                del self._idle[port]
                out.append(sock)
        return out

    def idle_sockets(self) -> list[socket.socket]:
        """Sockets of released ports, still bound."""
        with self._lock:
            return [sock for sock, _ in self._idle.values()]

    def close(self) -> None:
        """Close every idle socket."""
        with self._lock:
            for s, _ in self._idle.values():
                s.close()
            self._idle.clear()

    def _bind(self, port: int) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if self._rcvbuf:
                # Room for a burst (a sender catching up, a busy loop); the kernel caps it
                # at net.core.rmem_max and only uses what is queued.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._rcvbuf)
            s.bind((self.host, port))
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        return s
