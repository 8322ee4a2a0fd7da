"""Retention benchmark: a sweep of N expired objects (and their calls' index rows) on the
local store, with a share of young and held calls that must stay.

    python bench/retention.py                 # 100,000 expired objects
    python bench/retention.py --objects 10000

Objects are laid out as the pipeline writes them: four per call (recording, transcript
json and vtt, and the call manifest), one index row per call plus two utterances.
Prints the sweep time (target under 60 s) and checks that exactly the expired calls went.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.bus.inproc import InProcessBus  # noqa: E402
from pipeline.catalog import manifest_key, new_manifest  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.ids import call_key  # noqa: E402
from pipeline.services import Services  # noqa: E402
from recordings.index import index_of  # noqa: E402
from recordings.index.base import CallMeta, UtteranceRow  # noqa: E402
from recordings.retention import set_hold, sweep  # noqa: E402
from recordings.store.local import LocalStore  # noqa: E402

NAMES = ("recording.wav", "transcript.json", "transcript.vtt")
PER_CALL = len(NAMES) + 1  # plus the manifest


def populate(
    services: Services, tenants: list[str], n_calls: int, age_days: float, tag: str
) -> list[tuple[str, str, datetime]]:
    """Calls of `age_days` ago with their objects and index rows."""
    store = services.store
    index = index_of(services)
    now = datetime.now(UTC)
    calls = []
    rows: list[UtteranceRow] = []
    for i in range(n_calls):
        tenant = tenants[i % len(tenants)]
        cid = f"{tag}-{i:06d}"
        started = now - timedelta(days=age_days, seconds=i * 7)
        for name in NAMES:
            store.put(call_key(tenant, cid, started, name), b"x" * 64)
        m = new_manifest(tenant, cid, started, status="transcribed")
        store.put(manifest_key(tenant, cid), m.model_dump_json().encode())
        index.upsert_call(CallMeta(tenant, cid, started_at=started))
        rows += [
            UtteranceRow(tenant, cid, f"u-{cid}-{k}", "agent", k, k + 1, f"bonjour {k}")
            for k in range(2)
        ]
        if len(rows) >= 2000:
            index.upsert_utterances(rows)
            rows = []
        calls.append((tenant, cid, started))
    index.upsert_utterances(rows)
    return calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--objects", type=int, default=100_000, help="expired objects")
    ap.add_argument("--tenants", type=int, default=3)
    ap.add_argument("--young-calls", type=int, default=2_000)
    ap.add_argument("--held-calls", type=int, default=200)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-retention-"))
    settings = Settings(data_dir=tmp / "data")
    services = Services(
        settings=settings, bus=InProcessBus(1), store=LocalStore(settings.data_dir / "objects")
    )
    tenants = [f"tenant-{i}" for i in range(args.tenants)]
    n_expired = args.objects // PER_CALL
    t0 = time.perf_counter()
    expired = populate(services, tenants, n_expired, 120, "old")
    young = populate(services, tenants, args.young_calls, 30, "new")
    held = populate(services, tenants, args.held_calls, 150, "held")
    for tenant, cid, _ in held:
        set_hold(services, tenant, cid, True, "bench")
    n_objects = sum(1 for _ in services.store.list(""))
    print(
        f"populated {n_objects:,} objects ({n_expired * PER_CALL:,} expired, "
        f"{len(young) * PER_CALL:,} young, {len(held) * PER_CALL:,} held + "
        f"{len(held)} hold markers) in {time.perf_counter() - t0:.1f} s"
    )

    report = sweep(services)
    print(
        f"sweep: {report.objects_deleted:,} objects and {report.calls_deleted:,} calls "
        f"({report.utterances_deleted:,} utterances) deleted, {report.held_kept:,} held "
        f"objects kept, in {report.seconds:.1f} s   target < 60 s"
    )
    left = sum(1 for _ in services.store.list(""))
    index = index_of(services)
    ok = (
        report.objects_deleted == n_expired * PER_CALL
        and left == n_objects - report.objects_deleted
        and all(index.get_call(t, c) is not None for t, c, _ in young[:50] + held[:50])
        and all(index.get_call(t, c) is None for t, c, _ in expired[:50])
    )
    print(
        f"check: {'exactly the expired calls went' if ok else 'MISMATCH'} ({left:,} objects left)"
    )
    services.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
