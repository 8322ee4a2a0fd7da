"""A voicebot call over Asterisk AudioSocket, end to end: the robot call is placed with
`transport: audiosocket` (its id is the UUID Asterisk will connect with), the prompt is
played back over the connection as 20 ms signed-linear frames at real-time pace, the
caller answers with a key (an AudioSocket DTMF frame), the goodbye plays, and the robot
hangs up (a 0x00 frame)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import numpy as np

from pipeline.events import MediaPeer, RobotStart
from pipeline.ingest.audiosocket import audiosocket_of
from pipeline.services import Services
from robot.calls import prompts_of, sessions_of
from sim.streams import AudioSocketCall

PRESS = """
name: press
steps:
  - id: q
    ask: "Press one to continue."
    expect: yes_no
    dtmf: {"1": "yes", "2": "no"}
  - {id: bye, say: "Thank you.", hangup: done}
"""


def test_a_voicebot_call_over_audiosocket(services: Services, piper_voice: Any) -> None:
    listener = audiosocket_of(services)
    listener.start()
    call_id = str(uuid.uuid4())
    try:
        session = sessions_of(services).place(
            RobotStart(
                tenant="acme",
                call_id=call_id,
                scenario=PRESS,
                media=MediaPeer(transport="audiosocket"),
            )
        )
        assert session.media_answer() == {"transport": "audiosocket", "uuid": call_id}
        ask_s = len(prompts_of(services).render("Press one to continue.", "PCMU")) / 8000
        bye_s = len(prompts_of(services).render("Thank you.", "PCMU")) / 8000
        asterisk = AudioSocketCall("127.0.0.1", listener.port, call_id)
        line = threading.Thread(
            target=asterisk.send,
            args=(np.zeros(8000 * 20, np.int16),),
            kwargs={"dtmf": [(ask_s + 1.0, "1")], "hang_up": False},
            daemon=True,
        )
        line.start()
        assert session.wait(40), session.state()
        out = session.outcome
        assert out is not None and out.result == "done", session.steps
        assert out.slots == {"q": "yes"}
        # Both prompts played back in full (16-bit frames), then Asterisk was told to hang up.
        assert asterisk.hung_up.wait(10)
        played_s = len(asterisk.received) / 2 / 8000
        assert played_s >= ask_s + bye_s - 0.1, (played_s, ask_s, bye_s)
        asterisk.close()
    finally:
        listener.stop()
        time.sleep(0.1)
