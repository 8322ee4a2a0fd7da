"""Tenants' compiled rules and knowledge bases, rebuilt when the stored version changes."""

from __future__ import annotations

import logging
import threading

from pipeline.config import PrompterSettings
from pipeline.logs import ctx
from pipeline.metrics import Metrics
from prompter.engine import TenantBundle
from prompter.kb import KbIndex
from prompter.matcher import RuleSet
from prompter.patterns import PatternError
from prompter.playbook import Playbook
from prompter.store import PrompterStore

log = logging.getLogger(__name__)


def build_bundle(
    tenant: str,
    version: int,
    playbooks: list[tuple[str, Playbook]],
    kb: KbIndex,
    settings: PrompterSettings,
    metrics: Metrics | None = None,
) -> TenantBundle:
    """Compile a tenant's playbooks; one that no longer compiles is skipped, not fatal."""
    usable: list[tuple[str, Playbook]] = []
    for name, book in playbooks:
        try:
            RuleSet([(name, book)], default_cooldown_s=0, regex_timeout_ms=1)
        except PatternError as exc:
            log.error(
                "playbook %s of %s does not compile, skipped: %s",
                name,
                tenant,
                exc,
                **ctx(tenant, None),
            )
            if metrics is not None:
                metrics.inc("prompter_playbook_errors_total")
            continue
        usable.append((name, book))
    rules = RuleSet(
        usable,
        default_cooldown_s=settings.default_cooldown_s,
        regex_timeout_ms=settings.regex_timeout_ms,
    )
    return TenantBundle(tenant=tenant, version=version, rules=rules, kb=kb)


class BundleCache:
    """One compiled bundle per tenant; `get` reloads it when the tenant's version moved."""

    def __init__(self, store: PrompterStore, settings: PrompterSettings, metrics: Metrics) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self._bundles: dict[str, TenantBundle] = {}
        self._lock = threading.Lock()

    def get(self, tenant: str) -> TenantBundle:
        """The tenant's current bundle (checked against the store at every call)."""
        version = self.store.version(tenant)
        with self._lock:
            bundle = self._bundles.get(tenant)
            if bundle is not None and bundle.version == version:
                return bundle
        books = [(p.name, p.playbook) for p in self.store.playbooks(tenant)]
        kb = KbIndex(self.store.articles(tenant))
        bundle = build_bundle(tenant, version, books, kb, self.settings, self.metrics)
        self.metrics.inc("prompter_reloads_total")
        log.info(
            "loaded %d rules and %d articles of %s (version %d)",
            len(bundle.rules.rules),
            len(kb),
            tenant,
            version,
            **ctx(tenant, None),
        )
        with self._lock:
            self._bundles[tenant] = bundle
        return bundle
