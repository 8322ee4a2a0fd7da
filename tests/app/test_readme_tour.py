"""The README's tour, run as written: its `sh` blocks, in order, in one shell, against a
fresh `callpipe serve` in a fresh folder (only `CP` points the commands at this test's
port, as the tour's own `${CP:-...}` allows). Then `make run`'s start: the welcome with a
working key per role, and the demo playbook whose hints the demo call fires."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.demo import install_demo_categories, install_demo_playbook
from pipeline.services import Services
from prompter.store import prompter_store
from prompter.validate import load_playbook
from recordings.categories import parse_categories
from recordings.category_store import category_store
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]


def tour_blocks() -> list[str]:
    """The `sh` blocks of the README's tour section, in order."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## A tour", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def _serve(folder: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "CALLPIPE_AUDIOSOCKET__PORT": "0",
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), *extra],
        cwd=folder,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A user's folder: the project's environment (as `make run` leaves it), no data."""
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    return tmp_path


@pytest.fixture
def server(folder: Path, unused_port: int) -> Iterator[str]:
    proc = _serve(folder, unused_port)
    base = f"http://127.0.0.1:{unused_port}"

    def up() -> bool:
        try:
            return httpx.get(base + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return proc.poll() is not None

    wait_until(up, 60, "callpipe serve answering")
    assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
    yield base
    proc.terminate()
    proc.wait(20)


def test_the_readme_tour_runs_as_written(folder: Path, server: str) -> None:
    blocks = tour_blocks()
    assert len(blocks) >= 5, "the tour's commands were not found in the README"
    script = "set -euo pipefail\n" + "\n".join(blocks)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPIPE_")}
    run = subprocess.run(
        ["bash", "-c", script],
        cwd=folder,
        env={**env, "CP": server, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = run.stdout
    assert run.returncode == 0, f"stdout:\n{out[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    # /v1/me: the agent key names its agent
    assert '"role":"agent","agent_id":"agent-7"' in out
    # the upload's job, then its transcript as SubRip
    job = json.loads((folder / "job.json").read_text())
    assert job["job_url"] == f"/v1/jobs/{job['call_id']}"
    assert re.search(r"00:00:0\d,\d{3} --> .*\n.*cancel my contract", out, re.I), out[-2000:]
    # the playbook, and its rule fired on the live call
    assert '"rules":1' in out
    stats = json.loads(re.findall(r'\{"rules":\[.*?\]\}', out)[-1])
    assert {"rule": "retention/retention", "fired": 1, "useful": 0, "not_useful": 0} in stats[
        "rules"
    ]
    # search and its export find both calls' sentence
    assert '"total":2' in out
    assert "call_started_at,call_id,agent_id,direction,leg,start,end,text" in out
    # the categories, the live call tagged (its customer wanted to cancel), the dashboard
    assert '{"categories":2}' in out
    tagged = re.findall(r'\{"total":1,.*?"tags":\["churn-risk",.*?\}\]\}', out)
    assert tagged and '"caller":"+33612345678"' in tagged[-1], out[-3000:]
    assert '"agent_talk_ratio":' in out and '{"tag":"churn-risk","calls":1}' in out
    # the webhook's registration answers its secret
    assert '"secret":"whsec_' in out


def test_make_run_prints_where_to_go_with_working_keys_and_shows_hints(
    folder: Path, unused_port: int
) -> None:
    """`callpipe serve --demo` (what `make run` runs): the welcome comes as soon as the API
    answers, each of its keys works for its role, the demo playbook is in, and the demo
    call fires its hints for agent-7."""
    proc = _serve(folder, unused_port, "--demo")
    base = f"http://127.0.0.1:{unused_port}"
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    out = proc.stdout

    def pump() -> None:  # readline blocks: the deadline is kept by the queue's timeout
        for line in out:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 150
        while not any("demo call" in line and "played" in line for line in seen):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
            assert "Traceback" not in seen[-1], "".join(seen)
        text = "".join(seen)
        assert f"callpipe is up at {base}" in text
        welcome = text[text.index("callpipe is up") :]
        assert text.index("callpipe is up") < text.index("demo call")  # before, not after
        keys = {
            label.lower(): key
            for label, key in re.findall(
                r"(analyst|agent|admin|PBX)[^\n]*?key: +(cp_\S+)", welcome, re.I
            )
        }
        assert f"{base}/agent" in welcome and f"{base}/docs" in welcome
        assert sorted(keys) == ["admin", "agent", "analyst", "pbx"]
        for role, key in keys.items():
            me = httpx.get(base + "/v1/me", headers={"Authorization": f"Bearer {key}"}).json()
            assert me["role"] == role and me["tenant"] == "default"
        admin = {"Authorization": f"Bearer {keys['admin']}"}
        assert "3 rules and 1 knowledge-base article for" in welcome
        stats = httpx.get(base + "/v1/prompter/stats", headers=admin).json()
        fired = {s["rule"] for s in stats["rules"] if s["fired"]}
        demo = {"demo/retention", "demo/recording-notice", "demo/competitor", "kb:price-match"}
        assert fired == demo, stats
        # at its end the demo call is tagged with the demo categories it meets
        analyst = {"Authorization": f"Bearer {keys['analyst']}"}
        tags: list[str] = []
        until = time.monotonic() + 30
        while not tags and time.monotonic() < until:
            calls = httpx.get(base + "/v1/calls", headers=analyst).json()["calls"]
            tags = calls[0]["tags"] if calls else []
            time.sleep(0.5)
        assert tags == ["churn-risk", "no-recording-notice", "price-complaint"], calls
    finally:
        proc.terminate()
        proc.wait(20)
    # a second start reuses the keys it printed (they are kept in the data dir, owner-only)
    kept = json.loads((folder / "data" / "demo-keys.json").read_text())
    assert kept["analyst"] == keys["analyst"]
    assert (folder / "data" / "demo-keys.json").stat().st_mode & 0o077 == 0


def test_the_demo_playbook_goes_only_where_there_is_none(services: Services) -> None:
    assert install_demo_playbook(services) == (3, 1)
    assert install_demo_playbook(services) == (3, 1)  # a restart adds nothing
    # a tenant with playbooks of its own keeps only them
    store = prompter_store(services)
    own = load_playbook(
        "rules:\n  - id: r\n    when: {phrases: [bonjour]}\n"
        "    hint: {kind: script, title: T, text: x}\n",
        services.settings.prompter,
    )
    store.put_playbook("acme", "own", own, "...")
    services.settings.default_tenant = "acme"
    assert install_demo_playbook(services) == (1, 1)


def test_the_demo_categories_go_only_where_there_are_none(services: Services) -> None:
    assert install_demo_categories(services) == 3
    assert install_demo_categories(services) == 3  # a restart adds nothing
    tenant = services.settings.default_tenant
    own = parse_categories(
        "categories: [{id: mine, title: Mine, said: [{keywords: [refund]}]}]",
        "yaml",
        services.settings.prompter,
    )
    category_store(services).put(tenant, own, "")
    assert install_demo_categories(services) == 1
