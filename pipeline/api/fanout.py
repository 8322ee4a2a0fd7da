"""Fan-out from one consumer thread to many WebSockets: the live view and the hint stream.

A hub's consumer thread hands each message to the subscribers of a key (a call, an agent)
through one bounded asyncio queue per subscriber, on the subscriber's own event loop. The
thread never waits for a client: a full queue drops its oldest message (counted), and a
client that does not take a message within the send timeout is closed (1013, counted), so
a slow or dead browser only ever loses its own messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from fastapi import WebSocket, WebSocketDisconnect

from pipeline.metrics import Metrics

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

SLOW_CLOSE_CODE = 1013  # "try again later": the client did not keep up
Outcome = Literal["gone", "slow", "last"]


@dataclass(eq=False)
class Subscriber(Generic[K, T]):
    """One connected WebSocket: its key, its loop and its bounded queue."""

    key: K
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[T]
    on_drop: Callable[[], None]
    closed: bool = False

    def offer(self, msg: T) -> None:
        """Hand over a message from any thread; never blocks."""
        if self.closed:
            return
        try:
            self.loop.call_soon_threadsafe(self._put, msg)
        except RuntimeError:  # the loop is gone: the client is too
            self.closed = True

    def _put(self, msg: T) -> None:
        # Runs on the subscriber's loop: a full queue loses its oldest message.
        if self.queue.full():
            self.queue.get_nowait()
            self.on_drop()
        self.queue.put_nowait(msg)


@dataclass
class Fanout(Generic[K, T]):
    """The subscribers of each key, thread-safe; `dropped_metric` counts lost messages."""

    metrics: Metrics
    dropped_metric: str
    queue_size: int
    _subs: dict[K, set[Subscriber[K, T]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def subscribe(self, key: K, loop: asyncio.AbstractEventLoop) -> Subscriber[K, T]:
        """A new subscriber of `key`, fed from now on."""
        sub: Subscriber[K, T] = Subscriber(
            key, loop, asyncio.Queue(self.queue_size), lambda: self.metrics.inc(self.dropped_metric)
        )
        with self._lock:
            self._subs.setdefault(key, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber[K, T]) -> None:
        """Forget a subscriber (idempotent)."""
        sub.closed = True
        with self._lock:
            subs = self._subs.get(sub.key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.key]

    def publish(self, key: K, msg: T) -> int:
        """Offer `msg` to every subscriber of `key`; how many there were."""
        with self._lock:
            subs = list(self._subs.get(key, ()))
        for s in subs:
            s.offer(msg)
        return len(subs)

    def count(self) -> int:
        """Connected subscribers, all keys."""
        with self._lock:
            return sum(len(s) for s in self._subs.values())


async def send_within(ws: WebSocket, text: str, timeout_s: float) -> bool:
    """Send within the timeout; False (and the socket closed) for a client too slow."""
    try:
        await asyncio.wait_for(ws.send_text(text), timeout_s)
        return True
    except TimeoutError:
        with contextlib.suppress(Exception):  # the socket is half-written: just drop it
            await asyncio.wait_for(ws.close(code=SLOW_CLOSE_CODE, reason="client too slow"), 1.0)
        return False


async def until_disconnect(ws: WebSocket) -> None:
    """Returns when the client goes away (anything it sends is ignored)."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return


async def forward(
    ws: WebSocket,
    sub: Subscriber[K, T],
    gone: asyncio.Future[None],
    encode: Callable[[T], str],
    timeout_s: float,
    is_last: Callable[[T], bool] = lambda _: False,
) -> Outcome:
    """Send the subscriber's queue until the client is gone, is too slow, or the last
    message (`is_last`) has been sent."""
    while True:
        nxt: asyncio.Future[T] = asyncio.ensure_future(sub.queue.get())
        waiting: set[asyncio.Future[Any]] = {nxt, gone}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if gone in done:
            nxt.cancel()
            return "gone"
        msg = nxt.result()
        if not await send_within(ws, encode(msg), timeout_s):
            return "slow"
        if is_last(msg):
            return "last"
