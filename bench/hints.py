"""Souffleur benchmark.

1. Rules: a tenant with 1,000 rules (phrases, keywords, regexes, absences, silences) and
   200 KB articles; 100 concurrent calls replay utterance events (partials growing to
   finals, interleaved across calls) through the prompter stage. Prints the processing
   latency per event (p50/p95/max) and the hints per call.
2. Live: `--live-calls` simulated calls at once over real RTP (ingest -> live worker,
   Whisper -> prompter -> hint hub -> the app's WebSocket under uvicorn). For each customer
   line ending with a trigger phrase, prints the time from the end of its voiced audio to
   the hint arriving on the agent's WebSocket (p50/p95/max).

Usage:
    python bench/hints.py [--calls 100] [--rules 1000] [--live-calls 4] [--skip-live]
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.services import build_services
from pipeline.auth import keys_of
from pipeline.config import Settings
from pipeline.events import CallStarted, LegInfo, Utterance
from pipeline.services import Services
from prompter.kb import Article
from prompter.store import prompter_store
from prompter.validate import load_playbook
from prompter.worker import PrompterStage

WORDS = (
    "account invoice payment number address contract month plan offer phone internet "
    "bill charge service price today help question line order delivery router option "
    "customer agent minute week email password card bank transfer mobile data roaming "
    "facture compte paiement numero adresse contrat mois forfait offre telephone"
).split()
FILLER = "yes so well I think that the my your we is it of to and for on with".split()


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def _rules_yaml(n: int, rng: random.Random) -> str:
    lines = ["name: bench", "variables: {offer: ten percent}", "rules:"]
    for i in range(n):
        w1, w2 = rng.choice(WORDS), rng.choice(WORDS)
        kind = i % 20
        if kind < 14:
            trig = f'when: {{phrases: ["{w1} {w2} x{i}"], leg: customer}}'
        elif kind < 17:
            trig = f"when: {{keywords: [k{i}{w1}], leg: any}}"
        elif kind < 19:
            trig = f"when: {{regex: ['\\bref{i}-(?P<num>\\d{{3,6}})\\b']}}"
        else:
            trig = f'absent: {{phrases: ["notice {i} {w1}"], leg: agent, within_s: {30 + i}}}'
        lines += [
            f"  - id: r{i}",
            f"    {trig}",
            f'    hint: {{kind: script, title: "R{i}", text: "{{matched}} {{offer}}"}}',
        ]
    lines += [
        "  - id: hold",
        "    silence: {for_s: 20}",
        "    hint: {kind: alert, title: Hold, text: still there}",
    ]
    return "\n".join(lines) + "\n"


def _articles(n: int, rng: random.Random) -> list[Article]:
    return [
        Article(
            id=f"a{i}",
            title=" ".join(rng.sample(WORDS, 3)),
            questions=(" ".join(rng.sample(WORDS, 6)) + "?",),
            answer=" ".join(rng.sample(WORDS, 12)),
        )
        for i in range(n)
    ]


def _sentence(rng: random.Random, i: int) -> str:
    words = [rng.choice(WORDS if rng.random() < 0.5 else FILLER) for _ in range(rng.randint(6, 18))]
    if rng.random() < 0.1:  # now and then a trigger phrase
        r = rng.randrange(0, 700)
        words += ["x" + str(r)]
    return " ".join(words)


def bench_rules(n_calls: int, n_rules: int, seconds: float) -> None:
    """Part 1: events per call through the stage, timed one by one."""
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        services = build_services(Settings(data_dir=Path(tmp)))
        settings = services.settings.prompter
        text = _rules_yaml(n_rules, rng)
        t0 = time.perf_counter()
        book = load_playbook(text, settings)
        validate_s = time.perf_counter() - t0
        store = prompter_store(services)
        store.put_playbook("bench", "bench", book, text)
        for a in _articles(200, rng):
            store.put_article("bench", a)
        stage = PrompterStage(services)
        now = time.time()
        for c in range(n_calls):
            stage.process(
                CallStarted(
                    tenant="bench",
                    call_id=f"c{c}",
                    agent_id=f"a{c}",
                    started_at=datetime.fromtimestamp(now, UTC),
                    legs=(LegInfo(leg="agent"), LegInfo(leg="customer")),
                )
            )
        # Each call: utterances of 2-5 s alternating legs; partials every 0.8 s, then a final.
        events: list[tuple[float, Utterance]] = []
        for c in range(n_calls):
            t = rng.uniform(0, 2)
            u = 0
            while t < seconds:
                leg = "customer" if u % 2 else "agent"
                words = _sentence(rng, u).split()
                dur = max(1.0, len(words) * 0.3)
                parts = max(1, int(dur / 0.8))
                for k in range(parts + 1):
                    final = k == parts
                    shown = words[: max(1, len(words) * (k + 1) // (parts + 1))]
                    end = t + dur * (k + 1) / (parts + 1)
                    events.append(
                        (
                            end,
                            Utterance(
                                tenant="bench",
                                call_id=f"c{c}",
                                leg=leg,  # type: ignore[arg-type]
                                utterance_id=f"u-{c}-{u}",
                                start=t,
                                end=end,
                                text=" ".join(words if final else shown),
                                final=final,
                                source="live",
                                revision=k,
                            ),
                        )
                    )
                t += dur + rng.uniform(0.3, 1.5)
                u += 1
        events.sort(key=lambda e: e[0])
        lat: list[float] = []
        hints = 0
        t_all = time.perf_counter()
        for _at, ev in events:
            t1 = time.perf_counter()
            hints += len(list(stage.process(ev)))
            lat.append((time.perf_counter() - t1) * 1000)
        wall = time.perf_counter() - t_all
        tick_lat = []
        for k in range(50):
            t1 = time.perf_counter()
            hints += len(list(stage.tick(now + 10 + k)))
            tick_lat.append((time.perf_counter() - t1) * 1000)
        services.close()
    print(
        f"rules: {n_rules + 1} rules (validated in {validate_s:.2f} s), 200 KB articles, "
        f"{n_calls} concurrent calls, {seconds:.0f} s of talk each"
    )
    print(f"  events: {len(lat)} ({len(lat) / wall:.0f} events/s on one thread), hints: {hints}")
    print(
        f"  process latency per event: p50 {statistics.median(lat):.2f} ms, "
        f"p95 {_pct(lat, 95):.2f} ms, max {max(lat):.2f} ms"
    )
    print(
        f"  tick over {n_calls} calls: p50 {statistics.median(tick_lat):.2f} ms, "
        f"p95 {_pct(tick_lat, 95):.2f} ms"
    )


LIVE_RULES = """
rules:
  - id: retention
    when: {phrases: ["cancel my contract"], leg: customer}
    hint: {kind: script, title: Retention, text: "Offer two months free"}
  - id: refund
    when: {keywords: ["refund"], leg: customer}
    hint: {kind: script, title: Refund, text: "Check the last invoice"}
  - id: complaint
    when: {phrases: ["your manager"], leg: customer}
    hint: {kind: alert, title: Escalation, text: "Stay calm, offer a callback"}
"""
CUSTOMER = [
    ("Hello. I am calling because I want to cancel my contract.", "default/retention"),
    ("The last bill was wrong and I want a refund.", "default/refund"),
    ("This is not acceptable, I want to speak to your manager.", "default/complaint"),
]
AGENT = [
    "Good morning, thank you for calling. How can I help you today?",
    "I understand. Let me look at your account for a moment, please stay on the line.",
    "I see. I am checking the details of your account right now.",
    "Thank you for your patience, I will note all of this in your file.",
]


def _voiced_end(pcm: np.ndarray, start: int, end: int) -> int:
    loud = np.nonzero(np.abs(pcm[start:end].astype(np.int32)) > 600)[0]
    return start + int(loud[-1]) if len(loud) else end


def bench_live(n_calls: int) -> None:
    """Part 2: from the end of the triggering words to the hint on the WebSocket, with
    `n_calls` calls at once."""
    import httpx
    import uvicorn
    from websockets.sync.client import connect

    from app.api import create_app
    from app.roles import start_role
    from sim.pbx import parse_script, render_script, send_leg

    with tempfile.TemporaryDirectory() as tmp:
        base = random.randrange(30000, 59000, 200)
        settings = Settings(
            data_dir=Path(tmp), live={"rtp_port_min": base, "rtp_port_max": base + 199}
        )
        services: Services = build_services(settings)
        prompter_store(services).put_playbook(
            "default", "default", load_playbook(LIVE_RULES, settings.prompter), LIVE_RULES
        )
        voice = services.piper_voice()
        services.whisper_model()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        server = uvicorn.Server(
            uvicorn.Config(create_app(services), host="127.0.0.1", port=port, log_level="warning")
        )
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        stop = threading.Event()
        threads = start_role(services, "live", stop) + start_role(services, "prompter", stop)
        pbx = keys_of(services).create("default", "pbx")
        samples: list[float] = []
        missed: list[str] = []
        lock = threading.Lock()

        def one_call(c: int, start_at: float) -> None:
            agent_id = f"a-{c}"
            key = keys_of(services).create("default", "agent", agent_id=agent_id)
            # each call says the lines in its own order, so the calls do not speak in step
            order = CUSTOMER[c % len(CUSTOMER) :] + CUSTOMER[: c % len(CUSTOMER)]
            lines: list[dict[str, Any]] = [{"speaker": "agent", "text": AGENT[0], "pause": 0.4}]
            for i, (said, _) in enumerate(order):
                lines.append({"speaker": "customer", "text": said, "pause": 0.4})
                lines.append({"speaker": "agent", "text": AGENT[1 + i], "pause": 0.5})
            script = parse_script({"call_id": f"live-{c}", "agent_id": agent_id, "lines": lines})
            rendered = render_script(script, voice, lead_s=0.3 + 0.7 * c)
            got: dict[str, float] = {}
            with connect(f"ws://127.0.0.1:{port}/v1/agents/{agent_id}/hints?key={key}") as ws:
                ws.recv(timeout=5)
                reg = httpx.post(
                    f"http://127.0.0.1:{port}/v1/calls",
                    headers={"Authorization": f"Bearer {pbx}"},
                    json={
                        "call_id": f"live-{c}",
                        "agent_id": agent_id,
                        "language": "en",
                        "legs": [{"leg": "agent"}, {"leg": "customer"}],
                    },
                ).json()
                ends = {leg["leg"]: (leg["host"], leg["port"]) for leg in reg["legs"]}
                t0 = start_at
                senders = [
                    threading.Thread(
                        target=send_leg,
                        args=(rendered.legs[leg], *ends[leg]),
                        kwargs={"start": t0},
                        daemon=True,
                    )
                    for leg in ("agent", "customer")
                ]
                for t in senders:
                    t.start()
                deadline = t0 + rendered.duration + 10
                while time.monotonic() < deadline and len(got) < len(CUSTOMER):
                    try:
                        m = json.loads(ws.recv(timeout=0.5))
                    except TimeoutError:
                        continue
                    if m.get("type") == "hint":
                        got.setdefault(m["trigger"]["rule"], time.monotonic())
                for t in senders:
                    t.join()
                httpx.post(
                    f"http://127.0.0.1:{port}/v1/calls/live-{c}/hangup",
                    headers={"Authorization": f"Bearer {pbx}"},
                )
            spoken = [x for x in rendered.lines if x.leg == "customer"]
            with lock:
                for (_said, rule), line in zip(order, spoken, strict=True):
                    voiced = _voiced_end(rendered.legs["customer"], line.start, line.end)
                    if rule in got:
                        samples.append(got[rule] - (t0 + voiced / 8000))
                    else:
                        missed.append(f"live-{c}:{rule}")
                print(f"  call {c}: {len(got)}/{len(CUSTOMER)} hints", flush=True)

        start_at = time.monotonic() + 1.0
        callers = [threading.Thread(target=one_call, args=(c, start_at)) for c in range(n_calls)]
        for t in callers:
            t.start()
        for t in callers:
            t.join()
        stop.set()
        for t in threads:
            t.join(30)
        server.should_exit = True
        services.close()
    print(
        f"live: {n_calls} calls at once, {len(samples)} trigger lines heard, "
        f"{len(missed)} missed {missed} (Whisper {settings.stt.model} {settings.stt.compute_type})"
    )
    if samples:
        print(
            f"  end of triggering words -> hint on the WebSocket: "
            f"p50 {statistics.median(samples):.2f} s, p95 {_pct(samples, 95):.2f} s, "
            f"max {max(samples):.2f} s"
        )


def main() -> None:
    """Run both parts."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=120.0, help="talk per call (part 1)")
    ap.add_argument("--live-calls", type=int, default=4)
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--skip-rules", action="store_true")
    args = ap.parse_args()
    if not args.skip_rules:
        bench_rules(args.calls, args.rules, args.seconds)
    if not args.skip_live:
        bench_live(args.live_calls)


if __name__ == "__main__":
    main()
