"""Search benchmark: index N generated French-like utterances over calls and tenants, then
time phrase, boolean, prefix, filtered and common-word queries on each index back-end.

    python bench/search.py                      # 1,000,000 utterances, 50,000 calls, 3 tenants
    python bench/search.py --utterances 100000  # a quick run
    python bench/search.py --backend postgres   # PostgreSQL, and SQLite as the same-run reference

PostgreSQL: a throwaway server started here from Debian's binaries (sim/postgres.py, default
durability, shared_buffers 1 GB), or `--postgres-url` for one of yours (a database that
the benchmark may fill). The same queries (same seed) run on each back-end.

Prints the indexing rate (bulk batches as the index worker writes them, and through the
index stage on the in-process bus), query latency p50/p95 per kind (each query as the API
runs it: count plus the first page of 20 with snippets) and the index size on disk.
"capped": queries with more matches than the count cap (total shown as "1,000+"; relevance
then ranks the newest window of matches, see recordings/index/sqlite.py).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.bus.inproc import InProcessBus  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.database import PostgresPool  # noqa: E402
from pipeline.events import Utterance  # noqa: E402
from pipeline.services import Services  # noqa: E402
from pipeline.worker import WorkerRunner  # noqa: E402
from recordings.index.base import (  # noqa: E402
    CallMeta,
    Filters,
    Sort,
    TranscriptIndex,
    UtteranceRow,
)
from recordings.index.postgres import PostgresIndex  # noqa: E402
from recordings.index.query import parse_query  # noqa: E402
from recordings.index.sqlite import SqliteIndex  # noqa: E402
from recordings.index.worker import IndexStage  # noqa: E402
from recordings.store.local import LocalStore  # noqa: E402
from sim.postgres import fresh_database, postgres_server  # noqa: E402

STOP = (
    "je le la les de des du un une et à est pas vous nous mon ma mes votre vos il elle "
    "on ce que qui pour dans sur avec au aux en oui non bien très plus"
).split()
DOMAIN = (
    "résilier résiliation contrat abonnement facture factures remboursement rembourser "
    "paiement prélèvement échéance électricité gaz compteur relevé consommation tarif offre "
    "option forfait mobile internet box livraison commande colis retard adresse numéro client "
    "dossier réclamation litige avocat plainte conseiller responsable rappeler rappel rendez "
    "technicien intervention panne coupure réseau débit installation mot passe identifiant "
    "compte espace banque carte virement chèque trop cher moins prix promotion remise geste "
    "commercial fidélité ancienneté engagement période préavis mois année semaine lundi mardi "
    "mercredi jeudi vendredi samedi matin après midi soir merci bonjour revoir madame monsieur "
    "désolé comprends vérifier confirmer envoyer courrier mail email message téléphone appel "
    "attente transfert service après vente garantie réparation échange retour produit "
    "appareil écran batterie chargeur assurance sinistre déclaration expert indemnisation "
    "franchise devis signature document justificatif identité domicile déménagement "
    "mensualité crédit prêt taux intérêt dette recouvrement huissier relance pénalité frais"
).split()


def vocabulary(size: int, rng: random.Random) -> list[str]:
    """Stop words, then domain words, then pronounceable made-up words (rank = frequency)."""
    syll = [
        "ra",
        "lo",
        "mi",
        "té",
        "pé",
        "cho",
        "ni",
        "va",
        "ru",
        "gé",
        "da",
        "fon",
        "bri",
        "sel",
        "tu",
        "vo",
        "ca",
        "mè",
        "zi",
        "lan",
    ]
    words = list(dict.fromkeys(STOP + DOMAIN))
    seen = set(words)
    while len(words) < size:
        w = "".join(rng.choice(syll) for _ in range(rng.randint(2, 4)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def generate(
    n_utt: int, n_calls: int, tenants: list[str], seed: int
) -> tuple[list[CallMeta], list[UtteranceRow]]:
    """Calls spread over 90 days; utterances of 4-20 Zipf-distributed words each."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    vocab = vocabulary(20_000, rng)
    now = datetime.now(UTC)
    calls = [
        CallMeta(
            tenant=tenants[i % len(tenants)],
            call_id=f"call-{i:07d}",
            started_at=now - timedelta(seconds=rng.uniform(0, 90 * 86400)),
            agent_id=f"agent-{rng.randrange(60):02d}",
            direction=rng.choice(["inbound", "inbound", "outbound"]),
            caller=f"+3316{rng.randrange(10**7):07d}",
            callee=f"+3317{rng.randrange(10**7):07d}",
            source="batch",
        )
        for i in range(n_calls)
    ]
    ranks = nrng.zipf(1.15, size=n_utt * 13)
    ranks = ranks[ranks <= len(vocab)] - 1
    lengths = nrng.integers(4, 21, size=n_utt)
    rows: list[UtteranceRow] = []
    pos = 0
    per_call = n_utt // n_calls
    for i in range(n_utt):
        k = int(lengths[i])
        if pos + k > len(ranks):
            pos = 0
        text = " ".join(vocab[r] for r in ranks[pos : pos + k])
        pos += k
        call = calls[min(i // per_call, n_calls - 1)]
        j = i % per_call
        rows.append(
            UtteranceRow(
                call.tenant,
                call.call_id,
                f"u-{i:08d}",
                "agent" if j % 2 == 0 else "customer",
                j * 4.0,
                j * 4.0 + 3.5,
                text,
            )
        )
    return calls, rows


def pct(values: list[float], p: float) -> float:
    """The p-th percentile in milliseconds."""
    return float(np.percentile(np.array(values) * 1000, p))


def stage_rate(rows: list[UtteranceRow], data: Path, index: TranscriptIndex) -> float:
    """Utterances per second through IndexStage and WorkerRunner on the in-process bus."""
    settings = Settings(data_dir=data, topic_prefix="bench.")
    services = Services(settings=settings, bus=InProcessBus(6), store=LocalStore(data / "obj"))
    runner = WorkerRunner(
        IndexStage(services, index),
        services.bus,
        services.topics,
        services.metrics,
        max_records=500,
    )
    producer = services.bus.producer()
    for r in rows:
        u = Utterance(
            tenant=r.tenant,
            call_id=r.call_id,
            leg=r.leg,  # type: ignore[arg-type]
            utterance_id=r.utterance_id,
            start=r.start,
            end=r.end,
            text=r.text,
        )
        producer.send(services.topics.transcripts, u.key, u.encode())
    t0 = time.perf_counter()
    topic = services.topics.transcripts
    while services.metrics.value("events_in_total", worker="index", topic=topic) < len(rows):
        runner.run_once()
    runner.run_once()  # the last tick writes the last batch
    elapsed = time.perf_counter() - t0
    return len(rows) / elapsed


class Backend:
    """One index back-end under test: how to open its bulk index and a fresh stage index,
    and its size on disk."""

    def __init__(self, name: str, data: Path, pg_url: str | None = None) -> None:
        self.name = name
        self.data = data
        self.pg_url = pg_url
        self.pools: list[PostgresPool] = []

    def open(self, label: str) -> TranscriptIndex:
        if self.pg_url is None:
            path = self.data / f"{label}.sqlite"
            path.unlink(missing_ok=True)
            return SqliteIndex(path)
        pool = PostgresPool(fresh_database(self.pg_url, f"bench_{label}"), max_size=2)
        self.pools.append(pool)
        return PostgresIndex(pool)

    def after_load(self) -> str:
        """What a deployment runs after a bulk load (PostgreSQL: VACUUM ANALYZE)."""
        if not self.pools:
            return ""
        t0 = time.perf_counter()
        with self.pools[0].pool.connection() as conn:
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE transcript_utterances")
            conn.execute("VACUUM ANALYZE transcript_calls")
        return f"VACUUM ANALYZE after the load: {time.perf_counter() - t0:.1f} s"

    def size(self) -> int:
        if not self.pools:
            path = self.data / "index.sqlite"
            wal = path.with_name(path.name + "-wal")
            return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        with self.pools[0].pool.connection() as conn:
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        for pool in self.pools:
            pool.close()


def run(
    backend: Backend,
    calls: list[CallMeta],
    rows: list[UtteranceRow],
    tenants: list[str],
    args: argparse.Namespace,
) -> None:
    """Index, then time every kind of query, on one back-end."""
    print(f"\n== {backend.name} ==")
    index = backend.open("index")
    t0 = time.perf_counter()
    for c in calls:
        index.upsert_call(c)
    t_calls = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(0, len(rows), args.batch):
        index.upsert_utterances(rows[i : i + args.batch])
    t_utt = time.perf_counter() - t0
    print(f"calls indexed: {len(calls) / t_calls:,.0f} calls/s")
    print(
        f"utterances indexed (batches of {args.batch}): {len(rows) / t_utt:,.0f} utt/s "
        f"({t_utt:.1f} s)   target 5,000 utt/s"
    )
    if note := backend.after_load():
        print(note)
    n_stage = min(args.stage_utterances, len(rows))
    stage_index = backend.open("stage")
    rate = stage_rate(rows[:n_stage], backend.data / "stage", stage_index)
    stage_index.close()
    print(
        f"through IndexStage + WorkerRunner (in-process bus, {n_stage:,} utterances): "
        f"{rate:,.0f} utt/s"
    )
    query_latency(index, rows, tenants, args)
    index.close()
    size = backend.size()
    print(f"index size on disk: {size / 1e6:,.0f} MB ({size / len(rows):.0f} bytes per utterance)")


def query_latency(
    index: TranscriptIndex, rows: list[UtteranceRow], tenants: list[str], args: argparse.Namespace
) -> None:
    """p50/p95/max per kind of query; the same queries whatever the back-end (same seed)."""
    rng = random.Random(args.seed + 1)
    vocab_rows = rows

    def sample_words(k: int) -> list[str]:
        row = vocab_rows[rng.randrange(len(vocab_rows))]
        words = row.text.split()
        start = rng.randrange(max(1, len(words) - k + 1))
        return words[start : start + k]

    def mid_word() -> str:
        # words a searcher would type: not the stop words that fill every utterance
        while True:
            w = rng.choice(sample_words(20))
            if w not in STOP and len(w) > 3:
                return w

    def content_phrase() -> str:
        # two consecutive words of a real utterance, at least one of them not a stop word
        while True:
            words = sample_words(2)
            if len(words) == 2 and any(w not in STOP for w in words):
                return f'"{" ".join(words)}"'

    def stop_phrase() -> str:
        return f'"{rng.choice(STOP[:10])} {rng.choice(STOP[:10])}"'

    kinds = {
        "phrase": content_phrase,
        "boolean": lambda: rng.choice(
            [
                f"{mid_word()} OR {mid_word()}",
                f"{mid_word()} {mid_word()}",
                f"({mid_word()} OR {mid_word()}) NOT {mid_word()}",
            ]
        ),
        "prefix": lambda: mid_word()[:4] + "*",
        "filtered": mid_word,
        "common word": lambda: rng.choice(DOMAIN[:12]),
        "stop phrase": stop_phrase,
        # the same two kinds newest call first (sort=time): not part of the p95 target
        "time common": lambda: rng.choice(DOMAIN[:12]),
        "time stop": stop_phrase,
    }
    now = datetime.now(UTC)
    print(
        f"query latency over {args.queries} queries per kind (count + first page of 20 "
        "with snippets, relevance order unless the kind says time):"
    )
    print(f"{'kind':<12} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'mean hits':>10} {'capped':>7}")
    for kind, make in kinds.items():
        times: list[float] = []
        totals: list[int] = []
        capped = 0
        for _ in range(args.queries):
            q = parse_query(make())
            tenant = rng.choice(tenants)
            f = Filters()
            if kind == "filtered":
                since = now - timedelta(days=rng.uniform(30, 90))
                f = rng.choice(
                    [
                        Filters(
                            since=since,
                            until=since + timedelta(days=30),
                            leg=rng.choice(["agent", "customer"]),
                        ),
                        Filters(agent_id=f"agent-{rng.randrange(60):02d}"),
                        Filters(since=since, direction="outbound"),
                    ]
                )
            t0 = time.perf_counter()
            sort: Sort = "time" if kind.startswith("time") else "relevance"
            page = index.search(tenant, q, f, sort, 0, 20)
            times.append(time.perf_counter() - t0)
            totals.append(page.total)
            capped += not page.exact
        print(
            f"{kind:<12} {pct(times, 50):8.1f} {pct(times, 95):8.1f} "
            f"{max(times) * 1000:8.1f} {statistics.mean(totals):10,.0f} {capped:7d}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--utterances", type=int, default=1_000_000)
    ap.add_argument("--calls", type=int, default=None, help="default: utterances / 20")
    ap.add_argument("--tenants", type=int, default=3)
    ap.add_argument("--queries", type=int, default=200, help="per kind")
    ap.add_argument("--stage-utterances", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=500, help="utterances per write transaction")
    ap.add_argument("--data", type=Path, default=None, help="keep the SQLite index here")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--backend",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="postgres: PostgreSQL, then SQLite as the same-run reference",
    )
    ap.add_argument("--postgres-url", default=None, help="default: a throwaway local server")
    args = ap.parse_args()

    n_calls = args.calls or max(1, args.utterances // 20)
    tenants = [f"tenant-{i}" for i in range(args.tenants)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-search-"))
    data = args.data or tmp
    data.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    calls, rows = generate(args.utterances, n_calls, tenants, args.seed)
    print(
        f"generated {len(rows):,} utterances over {len(calls):,} calls and {len(tenants)} "
        f"tenants in {time.perf_counter() - t0:.1f} s"
    )
    try:
        if args.backend == "postgres":
            with contextlib.ExitStack() as stack:
                url = args.postgres_url or stack.enter_context(
                    postgres_server("-c shared_buffers=1GB")
                )
                pg = Backend("PostgreSQL full-text", data, url)
                try:
                    run(pg, calls, rows, tenants, args)
                finally:
                    pg.close()
        run(Backend("SQLite FTS5", data), calls, rows, tenants, args)
    finally:
        if args.data is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
