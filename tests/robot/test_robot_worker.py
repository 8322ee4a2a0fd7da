"""Role `robot`: robot.start commands off the bus, as POST /v1/robot/calls."""

from __future__ import annotations

import json
import time
from typing import Any

from pipeline.events import MediaPeer, RobotStart, decode_event
from pipeline.services import Services
from pipeline.worker import WorkerRunner
from robot.worker import RobotStage
from sim.phone import SimCaller

QUICK = """
name: quick
steps:
  - {id: q, ask: "Yes or no?", expect: yes_no, timeout_s: 1.0, no_input: {retries: 0}}
  - {id: bye, hangup: done}
"""


def test_robot_start_commands(services: Services, piper_voice: Any) -> None:
    runner = WorkerRunner(RobotStage(services), services.bus, services.topics, services.metrics)
    producer = services.bus.producer()
    peer = SimCaller(piper_voice)
    media = MediaPeer(host=peer.host, port=peer.port)
    commands = [
        RobotStart(tenant="acme", call_id="w-bad", scenario="no-such-scenario", media=media),
        RobotStart(
            tenant="acme",
            call_id="w-refused",
            scenario=QUICK,
            media=media,
            callee="+33611111111",
            caller_id="+33712345678",
            sector="insurance",
        ),
        RobotStart(tenant="acme", call_id="w-ok", scenario=QUICK, media=media),
    ]
    for c in commands:
        producer.send(services.topics.robot, c.key, c.encode())
    producer.send(services.topics.robot, "w-ok", commands[2].encode())  # a replay
    reader = services.bus.consumer([services.topics.robot], "reader")
    dead = services.bus.consumer([services.topics.deadletter], "dl")
    seen: list[Any] = []
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            runner.run_once()
            seen += [decode_event(m.value) for m in reader.poll(0.1)]
            if any(e.type == "robot.outcome" for e in seen):
                break
    finally:
        peer.close()
    letters = [json.loads(m.value) for m in dead.poll(0.5)]
    assert len(letters) == 1 and letters[0]["key"] == "w-bad"
    assert "unknown scenario" in letters[0]["reason"]
    refused = [e for e in seen if e.type == "robot.refused"]
    assert [(e.call_id, e.rule) for e in refused] == [("w-refused", "caller_id")]
    media_steps = [e for e in seen if e.type == "robot.step" and e.action == "media"]
    assert len(media_steps) == 1 and media_steps[0].answer["port"] > 0
    outcome = [e for e in seen if e.type == "robot.outcome"]
    assert outcome[0].call_id == "w-ok" and outcome[0].result == "no_input"
    assert services.metrics.value("robot_replays_total") == 1
