"""Counters and gauges, exposed in the Prometheus text format at /metrics."""

from __future__ import annotations

import threading
from collections import defaultdict

Labels = tuple[tuple[str, str], ...]


class Metrics:
    """A small thread-safe registry; one instance per process, passed down with the services.

    A `tenant` label is dropped unless `tenant_labels`: the series would tell whoever reads
    /metrics which tenants exist and how busy each is.
    """

    def __init__(self, tenant_labels: bool = False) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._gauges: dict[str, dict[Labels, float]] = defaultdict(dict)
        self.tenant_labels = tenant_labels

    def _labels(self, labels: dict[str, str]) -> Labels:
        return tuple(
            sorted((k, str(v)) for k, v in labels.items() if k != "tenant" or self.tenant_labels)
        )

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add to a counter."""
        key = self._labels(labels)
        with self._lock:
            series = self._counters[name]
            series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge."""
        with self._lock:
            self._gauges[name][self._labels(labels)] = value

    def value(self, name: str, **labels: str) -> float:
        """Current value of a counter or gauge series (0 when never touched)."""
        key = self._labels(labels)
        with self._lock:
            if key in self._counters.get(name, {}):
                return self._counters[name][key]
            return self._gauges.get(name, {}).get(key, 0.0)

    def total(self, name: str) -> float:
        """Sum of a counter over all its label sets."""
        with self._lock:
            return sum(self._counters.get(name, {}).values())

    def render(self) -> str:
        """Prometheus text exposition."""
        lines: list[str] = []
        with self._lock:
            for kind, table in (("counter", self._counters), ("gauge", self._gauges)):
                for name in sorted(table):
                    lines.append(f"# TYPE callpipe_{name} {kind}")
                    for labels, v in sorted(table[name].items()):
                        lab = ",".join(f'{k}="{_escape(val)}"' for k, val in labels)
                        lines.append(
                            f"callpipe_{name}{{{lab}}} {v:g}" if lab else f"callpipe_{name} {v:g}"
                        )
        return "\n".join(lines) + "\n"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
