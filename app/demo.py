"""`callpipe serve --demo` (what `make run` runs): once the API answers, print where the
pages are with a ready key for each role, install a demo playbook and knowledge-base
article, and play app/demo_call.yaml against it."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import httpx

from pipeline.auth import ROLES, Role, keys_of
from pipeline.services import Services
from pipeline.sqlite_db import private_file
from prompter.kb import Article
from prompter.store import prompter_store
from prompter.validate import load_playbook
from recordings.categories import parse_categories
from recordings.category_store import category_store
from sim.pbx import SimulationError, load_script, simulate_call

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
DEMO_SCRIPT = HERE / "demo_call.yaml"
DEMO_PLAYBOOK = HERE / "demo_playbook.yaml"
DEMO_ARTICLES = HERE / "demo_articles.json"
DEMO_CATEGORIES = HERE / "demo_categories.yaml"
# The demo call's agent (demo_call.yaml): the agent key printed is this agent's.
DEMO_AGENT = "agent-7"
KEYS_FILE = "demo-keys.json"


def demo_keys(services: Services) -> dict[Role, str]:
    """A key per role for the default tenant, kept in the data dir (owner-only) and reused
    while it still works, so each `make run` does not pile up keys."""
    tenant = services.settings.default_tenant
    path = services.settings.data_dir / KEYS_FILE
    keys = keys_of(services)
    try:
        kept: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        kept = {}
    out: dict[Role, str] = {}
    for role in ROLES:
        principal = keys.lookup(kept[role]) if role in kept else None
        if principal is not None and principal.tenant == tenant:
            out[role] = kept[role]
        else:
            agent = DEMO_AGENT if role == "agent" else None
            out[role] = keys.create(tenant, role, agent)
    private_file(path).write_text(json.dumps(out, indent=1))
    return out


def install_demo_playbook(services: Services) -> tuple[int, int]:
    """The demo playbook and articles in the default tenant, unless it has its own; the
    rules and articles it then has."""
    tenant = services.settings.default_tenant
    store = prompter_store(services)
    if not store.playbooks(tenant):
        source = DEMO_PLAYBOOK.read_text()
        book = load_playbook(source, services.settings.prompter)
        store.put_playbook(tenant, "demo", book, source)
    if not store.articles(tenant):
        for raw in json.loads(DEMO_ARTICLES.read_text()):
            store.put_article(tenant, Article.model_validate(raw))
    rules = sum(len(p.playbook.rules) for p in store.playbooks(tenant))
    return rules, len(store.articles(tenant))


def install_demo_categories(services: Services) -> int:
    """The demo's call categories in the default tenant, unless it has its own; how many
    it then has."""
    tenant = services.settings.default_tenant
    store = category_store(services)
    if store.get(tenant) is None:
        source = DEMO_CATEGORIES.read_text()
        store.put(tenant, parse_categories(source, "yaml", services.settings.prompter), source)
    stored = store.get(tenant)
    return len(stored.categories.categories) if stored else 0


def welcome(base: str, keys: dict[Role, str] | None, rules: int, articles: int) -> str:
    """What `make run` prints once the API answers: where to go, with which key."""
    k = keys or {}
    lines = [
        f"callpipe is up at {base}",
        f"  Analyst page  {base}/        (calls, search, dashboard) key: {k.get('analyst', '-')}",
        f"  Agent panel   {base}/agent   (live transcript, hints)  key: {k.get('agent', '-')}",
        f"  API docs      {base}/docs    admin key: {k.get('admin', '-')}",
        f"                                PBX key:   {k.get('pbx', '-')}",
        f"  Demo playbook: {rules} rules and {articles} knowledge-base"
        f" article{'' if articles == 1 else 's'} for"
        f" {DEMO_AGENT}'s calls; the demo call plays now (about 40 s): open the agent"
        " panel to see its hints.",
    ]
    return "\n".join(lines)


def _wait_for_api(base: str, stop: threading.Event, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        stop.wait(0.2)
    return False


def run_demo(services: Services, stop: threading.Event) -> str | None:
    """Play the demo call once; returns its call id (None if the API never came up)."""
    settings = services.settings
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
    base = f"http://{host}:{settings.port}"
    if not _wait_for_api(base, stop):
        log.warning("demo: the API at %s did not answer; no demo call", base)
        return None
    keys = demo_keys(services) if settings.auth_enabled else None
    rules, articles = install_demo_playbook(services)
    install_demo_categories(services)
    log.info(welcome(base, keys, rules, articles))
    pbx_key = keys["pbx"] if keys else None
    viewer_key = keys["analyst"] if keys else None
    script = load_script(DEMO_SCRIPT)
    log.info("demo: synthesising the demo call with Piper")
    try:
        result = simulate_call(base, script, voice=services.piper_voice(), key=pbx_key, stop=stop)
    except SimulationError as exc:
        log.warning("demo call failed: %s", exc)
        return None
    auth = f" -H 'Authorization: Bearer {viewer_key}'" if viewer_key else ""
    log.info(
        "demo call %s played (%.1f s). Transcript: curl%s %s/v1/calls/%s/transcript"
        " ; live view while a call runs: ws://%s:%d/v1/calls/<id>/live",
        result.call_id,
        result.rendered.duration,
        auth,
        base,
        result.call_id,
        host,
        settings.port,
    )
    return result.call_id


def start_demo(services: Services, stop: threading.Event) -> threading.Thread:
    """Run the demo in a daemon thread (it waits for the API to come up)."""

    def run() -> None:
        try:
            run_demo(services, stop)
        except Exception:  # the demo must never take the server down
            log.exception("demo call failed")

    t = threading.Thread(target=run, name="demo-call", daemon=True)
    t.start()
    return t
