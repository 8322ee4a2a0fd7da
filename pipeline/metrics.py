"""Counters, gauges and latency histograms, exposed in the Prometheus text format at /metrics.

Backed by prometheus_client (one registry per process's services, no global registry):
its exposition format, escaping and histogram buckets are the reference implementation's,
and the project keeps a small facade so a call site names a metric and its labels in one
line, as it always did.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

PREFIX = "callpipe_"
# Seconds: from a fast event (a media chunk, ~100 us) to a long one (a batch transcription).
LATENCY_BUCKETS: Sequence[float] = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    120.0,
)

# A `_created` series per counter doubles the exposition for a time nobody graphs.
prometheus_client.disable_created_metrics()


class Metrics:
    """The metrics of one process, passed down with the services; thread-safe.

    A metric is made on first use with the label names of that use; a later use with other
    label names is a programming error and raises. A `tenant` label is dropped unless
    `tenant_labels`: the series would tell whoever reads /metrics which tenants exist and
    how busy each is.
    """

    def __init__(self, tenant_labels: bool = False) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.tenant_labels = tenant_labels
        self._metrics: dict[str, MetricWrapperBase] = {}
        self._lock = threading.Lock()

    def _labels(self, labels: dict[str, str]) -> dict[str, str]:
        return {k: str(v) for k, v in labels.items() if k != "tenant" or self.tenant_labels}

    def _metric(
        self, kind: type[MetricWrapperBase], name: str, labels: dict[str, str]
    ) -> MetricWrapperBase:
        names = tuple(sorted(labels))
        with self._lock:
            metric = self._metrics.get(name)
            if metric is None:
                if kind is Histogram:
                    metric = Histogram(
                        PREFIX + name, name, names, registry=self.registry, buckets=LATENCY_BUCKETS
                    )
                else:
                    metric = kind(PREFIX + name, name, names, registry=self.registry)
                self._metrics[name] = metric
        if not isinstance(metric, kind) or tuple(sorted(metric._labelnames)) != names:
            raise ValueError(f"metric {name} is used with other labels or as another kind")
        return metric.labels(**labels) if labels else metric

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add to a counter (names end in `_total`)."""
        lab = self._labels(labels)
        self._metric(Counter, name, lab).inc(amount)  # type: ignore[attr-defined]

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge."""
        lab = self._labels(labels)
        self._metric(Gauge, name, lab).set(value)  # type: ignore[attr-defined]

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        """Add one duration to a latency histogram (names end in `_seconds`)."""
        lab = self._labels(labels)
        self._metric(Histogram, name, lab).observe(seconds)  # type: ignore[attr-defined]

    def value(self, name: str, **labels: str) -> float:
        """Current value of a counter or gauge series (0 when never touched); for a
        histogram, how many durations it holds."""
        metric = self._metrics.get(name)
        sample = PREFIX + name + ("_count" if isinstance(metric, Histogram) else "")
        got = self.registry.get_sample_value(sample, self._labels(labels))
        return 0.0 if got is None else float(got)

    def total(self, name: str) -> float:
        """Sum of a counter over all its label sets."""
        metric = self._metrics.get(name)
        if metric is None:
            return 0.0
        return sum(
            s.value
            for family in metric.collect()
            for s in family.samples
            if s.name == PREFIX + name
        )

    def render(self) -> str:
        """Prometheus text exposition."""
        return generate_latest(self.registry).decode()
