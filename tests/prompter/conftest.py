"""Fixtures of the souffleur tests: a playbook in the shape the issue describes, utterance
and call builders, and a real API server (uvicorn on a free port) for WebSocket tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.config import PrompterSettings
from pipeline.events import CallStarted, LegInfo, Utterance
from pipeline.services import Services

PLAYBOOK_YAML = """
name: frontline
variables: {offer: "two months free"}
rules:
  - id: retention
    when: {phrases: ["cancel my contract", "résilier mon contrat"], keywords: [cancellation],
           leg: customer}
    hint: {kind: script, title: "Retention", priority: 5,
           text: "The customer said '{matched}'. Offer {offer}."}
  - id: recording-notice
    absent: {phrases: ["this call is recorded", "cet appel est enregistré"], leg: agent,
             within_s: 30}
    hint: {kind: compliance, title: "Recording notice",
           text: "Tell the customer this call is recorded."}
  - id: hold
    silence: {for_s: 20}
    hint: {kind: alert, title: "Silence", text: "Tell the customer you are still there."}
"""

STARTED = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
T0 = STARTED.timestamp()


def _utt(
    text: str,
    *,
    leg: str = "customer",
    uid: str = "u-1",
    start: float = 1.0,
    end: float | None = None,
    final: bool = True,
    revision: int = 0,
    tenant: str = "acme",
    call_id: str = "c-1",
    source: str = "live",
) -> Utterance:
    """A live utterance (partial when final=False)."""
    return Utterance(
        tenant=tenant,
        call_id=call_id,
        leg=leg,
        utterance_id=uid,
        start=start,  # type: ignore[arg-type]
        end=end if end is not None else start + 2.0,
        text=text,
        final=final,
        source=source,
        revision=revision,  # type: ignore[arg-type]
    )


def _call_started(
    call_id: str = "c-1",
    tenant: str = "acme",
    agent_id: str = "a-7",
    started_at: datetime = STARTED,
) -> CallStarted:
    """A two-leg call.started for an agent."""
    return CallStarted(
        tenant=tenant,
        call_id=call_id,
        agent_id=agent_id,
        caller="+33100000000",
        started_at=started_at,
        legs=(LegInfo(leg="agent"), LegInfo(leg="customer")),
    )


@pytest.fixture
def prompter_overrides() -> dict[str, Any]:
    """Souffleur settings a test changes (parametrize this name to override)."""
    return {}


@pytest.fixture
def server(
    services: Services, prompter_overrides: dict[str, Any], serve_app: Callable[[Services], Any]
) -> Any:
    """The embedded app on a free port."""
    if prompter_overrides:
        services.settings.prompter = services.settings.prompter.model_copy(
            update=prompter_overrides
        )
    return serve_app(services)


@pytest.fixture
def playbook_yaml() -> str:
    """Retention script, recording-notice absence, 20 s hold reminder."""
    return PLAYBOOK_YAML


@pytest.fixture
def make_utt() -> Any:
    """`make_utt(text, leg=, uid=, start=, end=, final=, ...)` -> a live Utterance."""
    return _utt


@pytest.fixture
def make_call() -> Any:
    """`make_call(call_id=, tenant=, agent_id=, started_at=)` -> a CallStarted."""
    return _call_started


@pytest.fixture
def prompter_settings() -> PrompterSettings:
    """Default souffleur settings."""
    return PrompterSettings()
