"""The metrics facade on prometheus_client: what a scraper reads back is what was counted."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.metrics import Metrics


def families(m: Metrics) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return {
        f.name: [(s.name, s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(m.render())
    }


def test_counters_gauges_and_histograms_round_trip_through_the_exposition() -> None:
    m = Metrics()
    m.inc("calls_total", worker="live")
    m.inc("calls_total", 2, worker="live")
    m.inc("calls_total", worker="batch")
    m.set("calls_active", 4)
    m.observe("stage_process_seconds", 0.02, worker="live")
    m.observe("stage_process_seconds", 3.0, worker="live")
    got = families(m)
    assert ("callpipe_calls_total", {"worker": "live"}, 3.0) in got["callpipe_calls"]
    assert m.value("calls_total", worker="batch") == 1 and m.total("calls_total") == 4
    assert got["callpipe_calls_active"] == [("callpipe_calls_active", {}, 4.0)]
    buckets = {
        s[1]["le"]: s[2] for s in got["callpipe_stage_process_seconds"] if s[0].endswith("bucket")
    }
    assert (buckets["0.025"], buckets["2.5"], buckets["5.0"], buckets["+Inf"]) == (1, 1, 2, 2)
    assert m.value("stage_process_seconds", worker="live") == 2
    assert m.value("never_total") == 0 and m.total("never_total") == 0


def test_tenants_are_not_labels_unless_asked() -> None:
    hidden, shown = Metrics(), Metrics(tenant_labels=True)
    for m in (hidden, shown):
        m.inc("hints_total", tenant="acme", kind="script")
    assert "acme" not in hidden.render() and hidden.value("hints_total", kind="script") == 1
    assert shown.value("hints_total", tenant="acme", kind="script") == 1


def test_a_metric_used_with_other_labels_is_refused() -> None:
    m = Metrics()
    m.inc("x_total", worker="a")
    with pytest.raises(ValueError, match="other labels"):
        m.inc("x_total", topic="t")
    with pytest.raises(ValueError, match="another kind"):
        m.set("x_total", 1, worker="a")
