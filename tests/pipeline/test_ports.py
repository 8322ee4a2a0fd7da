"""PortPool: released ports keep their socket for a while, then give the descriptor back."""

from __future__ import annotations

import socket
import time

from pipeline.ingest.ports import PortPool


def _free_even_range(n: int) -> tuple[int, int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1] + 1000
    base += base % 2
    return base, base + 2 * (n - 1)


def test_a_released_socket_lingers_then_expires_and_its_port_is_bound_again() -> None:
    low, high = _free_even_range(2)
    pool = PortPool("127.0.0.1", low, high, linger_s=5.0, rcvbuf=None)
    port, sock = pool.acquire()
    assert pool.release(port, sock) == []
    # still bound while it lingers: late packets of the old call are taken and counted
    assert pool.idle_sockets() == [sock] and pool.expired() == []
    assert pool.expired(time.monotonic() + 6.0) == [sock]
    assert pool.idle_sockets() == []
    sock.close()
    ports = {pool.acquire()[0], pool.acquire()[0]}
    assert ports == {low, high}  # the expired port is handed out again, freshly bound
    pool.close()


def test_idle_sockets_beyond_the_limit_are_given_back_at_once() -> None:
    low, high = _free_even_range(3)
    pool = PortPool("127.0.0.1", low, high, idle_limit=1, rcvbuf=None)
    taken = [pool.acquire() for _ in range(2)]
    assert pool.release(*taken[0]) == []
    assert pool.release(*taken[1]) == [taken[0][1]]
    taken[0][1].close()
    pool.close()
