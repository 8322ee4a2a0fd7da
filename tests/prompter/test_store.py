"""The prompter's store on both back-ends (SQLite, PostgreSQL): versions, playbooks,
articles, hints and feedback, tenants apart."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.config import Settings
from pipeline.database import Database
from pipeline.events import Hint, HintTrigger
from prompter.kb import Article
from prompter.store import NAME, SCHEMA, PrompterStore
from prompter.validate import load_playbook

PLAYBOOK = """
rules:
  - id: refund
    when: {phrases: ["refund"], leg: customer}
    hint: {kind: script, title: Refund, text: "Offer the refund form"}
"""


def _hint(tenant: str, hint_id: str, rule: str) -> Hint:
    return Hint(
        tenant=tenant,
        call_id="c1",
        agent_id="a-1",
        hint_id=hint_id,
        kind="script",
        title="t",
        text="x",
        trigger=HintTrigger(rule=rule),
    )


def test_playbooks_and_articles_bump_the_version_per_tenant(
    database: Callable[[str, list[str]], Database],
) -> None:
    store = PrompterStore(database(NAME, SCHEMA))
    book = load_playbook(PLAYBOOK, Settings().prompter)
    assert store.version("acme") == 0
    assert store.put_playbook("acme", "front", book, PLAYBOOK) is True
    assert store.put_playbook("acme", "front", book, PLAYBOOK) is False  # replaced
    article = Article(id="refunds", title="Refunds", answer="Within 14 days.")
    assert store.put_article("acme", article) is True
    assert store.version("acme") == 3 and store.version("rival") == 0
    assert [p.name for p in store.playbooks("acme")] == ["front"]
    assert store.playbooks("rival") == [] and store.get_article("rival", "refunds") is None
    assert store.articles("acme") == [article]
    assert store.delete_playbook("acme", "front") and not store.delete_playbook("acme", "front")
    assert store.delete_article("acme", "refunds")
    assert store.version("acme") == 5


def test_hints_recorded_once_and_feedback_counted(
    database: Callable[[str, list[str]], Database],
) -> None:
    store = PrompterStore(database(NAME, SCHEMA))
    hints = [_hint("acme", "h1", "front/refund"), _hint("acme", "h2", "front/refund")]
    store.record_hints(hints)
    store.record_hints(hints[:1])  # a replay
    store.record_hints([_hint("rival", "h1", "other/x")])
    store.record_feedback("acme", "h1", False, "a-1")
    store.record_feedback("acme", "h1", True, "a-1")  # a second verdict replaces the first
    store.record_feedback("acme", "h2", False, "a-1")
    (stats,) = store.stats("acme")
    assert (stats.rule, stats.fired, stats.useful, stats.not_useful) == ("front/refund", 2, 1, 1)
    fired = store.fired_hint("acme", "h1")
    assert fired is not None and fired.rule == "front/refund"
    assert store.fired_hint("acme", "nope") is None
