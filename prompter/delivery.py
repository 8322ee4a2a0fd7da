"""Hint delivery: from the hints topic to each agent's WebSockets, with a bounded replay.

A HintHub consumes the hints and calls topics (only new records, in a consumer group of
its own, so every API process sees every hint) in one thread. It keeps, per agent, the
current calls and the last N hints (the replay history), and hands each hint to the
agent's connected clients through the fan-out (pipeline/api/fanout.py: a bounded queue
per client, a slow client only loses its own messages).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pipeline.api.fanout import Fanout, Subscriber
from pipeline.bus.tail import BusTail
from pipeline.events import CallEnded, CallStarted, Event, Hint
from pipeline.logs import ctx
from pipeline.services import Services

log = logging.getLogger(__name__)

AgentKey = tuple[str, str]  # (tenant, agent_id)
Message = dict[str, Any]
_POLL_S = 0.2


HintClient = Subscriber[AgentKey, Message]


@dataclass
class _Agent:
    history: deque[Message]
    calls: dict[str, Message] = field(default_factory=dict)


class HintHub:
    """Every agent's hints and current calls as this process sees them."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings.prompter
        self.metrics = services.metrics
        self._agents: dict[AgentKey, _Agent] = {}
        self.clients: Fanout[AgentKey, Message] = Fanout(
            services.metrics, "prompter_ws_dropped_total", self.settings.ws_queue_size
        )
        self._call_agent: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._tail = BusTail(
            services.bus,
            services.metrics,
            [services.topics.hints, services.topics.calls],
            "prompter-delivery",
            self.dispatch,
            name="hint-hub",
            metric_prefix="prompter_hub",
            poll_s=_POLL_S,
        )

    # -- the consumer thread ------------------------------------------------------------
    def start(self) -> None:
        """Start consuming (idempotent)."""
        self._tail.start()

    def wait_ready(self, timeout_s: float) -> bool:
        """True once the consumer has joined and will see every new hint."""
        return self._tail.wait_ready(timeout_s)

    def close(self) -> None:
        """Stop the consumer thread."""
        self._tail.close()

    # -- routing --------------------------------------------------------------------------
    def _agent(self, key: AgentKey) -> _Agent:
        agent = self._agents.get(key)
        if agent is None:
            agent = _Agent(history=deque(maxlen=self.settings.history_per_agent))
            self._agents[key] = agent
        return agent

    def dispatch(self, event: Event) -> None:
        """Route one event from the bus (or a test) to the agents it concerns."""
        if isinstance(event, Hint):
            self._hint(event)
        elif isinstance(event, CallStarted) and event.agent_id:
            msg = {
                "type": "call.started",
                "call_id": event.call_id,
                "caller": event.caller,
                "callee": event.callee,
                "direction": event.direction,
                "started_at": event.started_at.isoformat(),
            }
            key = (event.tenant, event.agent_id)
            with self._lock:
                self._agent(key).calls[event.call_id] = msg
                self._call_agent[(event.tenant, event.call_id)] = event.agent_id
                # Under the lock: a client subscribing now gets the call either in its
                # hello or from the fan-out, never neither.
                self.clients.publish(key, msg)
        elif isinstance(event, CallEnded):
            with self._lock:
                agent_id = self._call_agent.pop((event.tenant, event.call_id), None)
                if agent_id is None:
                    return
                key = (event.tenant, agent_id)
                self._agent(key).calls.pop(event.call_id, None)
                self.clients.publish(key, {"type": "call.ended", "call_id": event.call_id})

    def _hint(self, hint: Hint) -> None:
        if not hint.agent_id:
            self.metrics.inc("prompter_hints_undeliverable_total", reason="no_agent")
            return
        msg = hint.model_dump(mode="json")
        key = (hint.tenant, hint.agent_id)
        with self._lock:
            agent = self._agent(key)
            if any(m["hint_id"] == hint.hint_id for m in agent.history):
                return  # a replayed hint: the agent has it already
            agent.history.append(msg)
            sent = self.clients.publish(key, msg)
        self.metrics.inc("prompter_hints_routed_total")
        log.debug("hint %s to %d client(s)", hint.hint_id, sent, **ctx(hint.tenant, hint.call_id))

    # -- clients --------------------------------------------------------------------------
    def subscribe(
        self,
        tenant: str,
        agent_id: str,
        loop: asyncio.AbstractEventLoop,
        last_hint_id: str | None = None,
    ) -> tuple[HintClient, list[Message], list[Message], bool]:
        """Register a client: (client, current calls, backlog to send first, gap).

        Without `last_hint_id` the backlog is the history of the agent's current calls;
        with it, every later hint; when that id is no longer in the history, `gap` is
        True and the whole history is sent.
        """
        with self._lock:
            agent = self._agent((tenant, agent_id))
            history = list(agent.history)
            calls = list(agent.calls.values())
            gap = False
            if last_hint_id is None:
                current = set(agent.calls)
                backlog = [m for m in history if m["call_id"] in current]
            else:
                ids = [m["hint_id"] for m in history]
                if last_hint_id in ids:
                    backlog = history[ids.index(last_hint_id) + 1 :]
                else:
                    gap, backlog = True, history
            client = self.clients.subscribe((tenant, agent_id), loop)
        self.metrics.set("prompter_ws_clients", self.clients.count())
        return client, calls, backlog, gap

    def unsubscribe(self, client: HintClient) -> None:
        """Forget a client (idempotent)."""
        self.clients.unsubscribe(client)
        self.metrics.set("prompter_ws_clients", self.clients.count())


def hint_hub(services: Services) -> HintHub:
    """The process's hub (one consumer however many routers or apps are built)."""
    return services.component("prompter.hub", lambda: HintHub(services))
