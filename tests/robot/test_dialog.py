"""The dialog engine as a state machine: branches, retries, confirmation, DTMF, barge-in,
partials, maximum duration. No audio: inputs are fed by hand, commands checked."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from pipeline.events import RobotOutcome, RobotStep
from robot.dialog import (
    Command,
    DialogEngine,
    Dtmf,
    Emit,
    Final,
    Hangup,
    Partial,
    PeerGone,
    Play,
    PromptFinished,
    SpeechStarted,
    SpeechStopped,
    Started,
    StopPlayback,
    Tick,
    Transfer,
)
from robot.validate import load_scenario


class Run:
    """An engine plus the commands it gave, with helpers to play prompts to their end."""

    def __init__(self, yaml_text: str, **kw: Any) -> None:
        self.engine = DialogEngine(
            load_scenario(yaml_text),
            {"name": "Ana"},
            "acme",
            "c-1",
            no_input_timeout_s=5.0,
            max_duration_s=120.0,
            today=date(2026, 11, 23),
            **kw,
        )
        self.t = 100.0
        self.log: list[Command] = []

    def feed(self, inp: Any) -> list[Command]:
        out = self.engine.handle(inp)
        self.log.extend(out)
        return out

    def at(self, dt: float = 0.1) -> float:
        self.t += dt
        return self.t

    def start(self) -> Play:
        out = self.feed(Started(self.t))
        return plays(out)[-1]

    def finish_prompt(self) -> list[Command]:
        token = self.engine.playing
        assert token is not None, "nothing is playing"
        return self.feed(PromptFinished(token, self.at(1.0)))

    def say(self, text: str, utt: int) -> list[Command]:
        self.feed(SpeechStarted(self.at()))
        self.feed(SpeechStopped(self.at(0.8)))
        return self.feed(Final(text, utt, self.at(0.3)))

    @property
    def outcome(self) -> RobotOutcome:
        outs = [
            c.event for c in self.log if isinstance(c, Emit) and isinstance(c.event, RobotOutcome)
        ]
        assert len(outs) == 1
        return outs[0]

    def steps(self, action: str) -> list[RobotStep]:
        return [
            c.event
            for c in self.log
            if isinstance(c, Emit) and isinstance(c.event, RobotStep) and c.event.action == action
        ]


def plays(cmds: list[Command]) -> list[Play]:
    return [c for c in cmds if isinstance(c, Play)]


def test_survey_billing_path(survey_yaml: str) -> None:
    r = Run(survey_yaml)
    assert r.start().text == "Hello Ana, this is a short survey from your energy supplier."
    assert plays(r.finish_prompt())[0].step == "happy"
    r.finish_prompt()
    assert plays(r.say("Yes, very.", 1))[0].step == "people"
    r.finish_prompt()
    assert plays(r.say("There are four of us.", 2))[0].step == "reason"
    r.finish_prompt()
    bye = plays(r.say("It's about my bill.", 3))[0]
    assert bye.text == "Thank you Ana. We will look at your bill. Goodbye."
    end = r.finish_prompt()
    assert Hangup("completed") in end
    out = r.outcome
    assert out.result == "completed"
    assert out.slots == {"happy": "yes", "household": 4, "reason": "billing"}
    assert [t["who"] for t in out.transcript].count("caller") == 3
    assert [s.step for s in r.steps("enter")] == [
        "hello",
        "happy",
        "people",
        "reason",
        "bye_billing",
    ]


def test_intent_branch_transfers(survey_yaml: str) -> None:
    r = Run(survey_yaml)
    r.start()
    r.finish_prompt()
    r.finish_prompt()
    r.say("no", 1)
    r.finish_prompt()
    r.say("two", 2)
    r.finish_prompt()
    r.say("We have a power cut since this morning", 3)
    end = r.finish_prompt()
    transfers = [c for c in end if isinstance(c, Transfer)]
    assert transfers and transfers[0].target.queue == "outages"
    assert r.outcome.result == "transferred"
    assert r.outcome.slots["happy"] == "no"


def test_no_input_retries_then_hangs_up(survey_yaml: str) -> None:
    r = Run(survey_yaml)
    r.start()
    r.finish_prompt()
    r.finish_prompt()  # the question was asked; nobody answers
    assert r.feed(Tick(r.at(4.0))) == []
    again = plays(r.feed(Tick(r.at(1.5))))
    assert again[0].text.startswith("Sorry, I did not hear you.")
    r.finish_prompt()
    end = r.feed(Tick(r.at(5.1)))
    assert Hangup("no_input") in end
    assert r.outcome.result == "no_input"
    assert len(r.steps("no_input")) == 2


def test_cough_is_no_input_not_a_stuck_session(survey_yaml: str) -> None:
    r = Run(survey_yaml)
    r.start()
    r.finish_prompt()
    r.finish_prompt()
    r.feed(SpeechStarted(r.at()))
    assert r.feed(Tick(r.at(10.0))) == []  # while the caller makes noise, no timeout
    r.feed(SpeechStopped(r.at(0.3)))  # ... and no words ever come of it
    assert plays(r.feed(Tick(r.at(5.1))))[0].text.startswith("Sorry")


def test_words_heard_unsurely_are_noise_not_an_answer(survey_yaml: str) -> None:
    # Whisper spells a cough as "No" at a word probability of 0.05: not an answer.
    r = Run(survey_yaml, min_confidence=0.25)
    r.start()
    r.finish_prompt()
    r.finish_prompt()
    r.feed(SpeechStarted(r.at()))
    assert r.feed(Partial("No", 7, r.at(0.2), confidence=0.05)) == []
    r.feed(SpeechStopped(r.at(0.3)))
    r.feed(Final("No.", 7, r.at(0.2), confidence=0.05))
    assert r.engine.slots == {} and not r.steps("no_match")
    assert [s.text for s in r.steps("unclear")] == ["No."]
    assert plays(r.feed(Tick(r.at(5.1))))[0].text.startswith("Sorry, I did not hear you.")
    # the same words heard surely are the answer
    r.finish_prompt()
    r.say("No.", 8)
    assert r.engine.slots == {"happy": "no"}


def test_no_match_reprompts_then_hangs_up(survey_yaml: str) -> None:
    r = Run(survey_yaml)
    r.start()
    r.finish_prompt()
    r.finish_prompt()
    assert plays(r.say("purple elephants", 1))[0].text == "Please answer yes or no."
    r.finish_prompt()
    assert Hangup("no_match") in r.say("banana", 2)
    assert r.outcome.result == "no_match"


CONFIRM = """
name: confirm
steps:
  - id: amount
    ask: "How much do you want to pay?"
    expect: number
    confirm: "You said {value} euros, is that right?"
    no_match: {retries: 2}
  - {id: bye, say: "Noted {amount} euros.", hangup: paid}
"""


def test_confirmation_yes_fills_no_reasks() -> None:
    r = Run(CONFIRM)
    r.start()
    r.finish_prompt()
    assert plays(r.say("fifty", 1))[0].text == "You said 50 euros, is that right?"
    r.finish_prompt()
    assert plays(r.say("no", 2))[0].text == "How much do you want to pay?"
    assert "amount" not in r.engine.slots
    r.finish_prompt()
    r.say("sixty", 3)
    r.finish_prompt()
    assert plays(r.say("yes", 4))[0].text == "Noted 60 euros."
    r.finish_prompt()
    assert r.outcome.result == "paid"
    assert r.outcome.slots == {"amount": 60}


def test_dtmf_answers_during_the_prompt(survey_yaml: str) -> None:
    r = Run(survey_yaml)
    r.start()
    r.finish_prompt()
    playing = r.engine.playing
    out = r.feed(Dtmf("2", r.at()))  # "no" while the question is still being asked
    assert playing is not None and StopPlayback(playing) in out
    assert plays(out)[0].step == "people"
    r.finish_prompt()
    for d in "3#":
        out = r.feed(Dtmf(d, r.at()))
    assert plays(out)[0].step == "reason"
    out = r.feed(Dtmf("1", r.at()))
    assert plays(out)[0].step == "bye_billing"
    r.finish_prompt()
    assert r.outcome.slots == {"happy": "no", "household": 3, "reason": "billing"}


def test_dtmf_digits_end_on_timeout_and_unknown_key_is_no_match(survey_yaml: str) -> None:
    r = Run(survey_yaml)
    r.start()
    r.finish_prompt()
    r.finish_prompt()
    assert plays(r.feed(Dtmf("9", r.at())))[0].text == "Please answer yes or no."
    r.finish_prompt()
    r.feed(Dtmf("1", r.at()))
    r.finish_prompt()
    r.feed(Dtmf("1", r.at()))
    r.feed(Dtmf("2", r.at(1.0)))
    assert plays(r.feed(Tick(r.at(5.5))))[0].step == "reason"
    assert r.engine.slots["household"] == 12


def test_barge_in_stops_ask_prompts_not_say_prompts(survey_yaml: str) -> None:
    r = Run(survey_yaml)
    r.start()
    hello = r.engine.playing
    assert r.feed(SpeechStarted(r.at())) == []  # the greeting plays on
    assert r.engine.playing == hello
    r.feed(SpeechStopped(r.at()))
    r.finish_prompt()
    asking = r.engine.playing
    out = r.feed(SpeechStarted(r.at()))
    assert asking is not None and out[0] == StopPlayback(asking)
    assert r.engine.playing is None
    assert len(r.steps("barge_in")) == 1
    r.feed(SpeechStopped(r.at(0.5)))
    assert plays(r.feed(Final("yes", 1, r.at(0.4))))[0].step == "people"


def test_partial_answer_acted_on_when_caller_stops(survey_yaml: str) -> None:
    r = Run(survey_yaml)
    r.start()
    r.finish_prompt()
    r.finish_prompt()
    r.feed(SpeechStarted(r.at()))
    assert r.feed(Partial("Yes", 7, r.at(0.5))) == []  # still talking
    out = r.feed(SpeechStopped(r.at(0.4)))
    assert plays(out)[0].step == "people"
    # the final of the same utterance does not answer the next question
    assert r.feed(Final("Yes, absolutely", 7, r.at(0.6))) == []
    assert r.engine.step is not None and r.engine.step.id == "people"
    # an unsure partial is not taken
    r.finish_prompt()
    r.feed(SpeechStarted(r.at()))
    assert r.feed(Partial("forty", 8, r.at(0.5))) == []
    assert r.feed(SpeechStopped(r.at(0.4))) == []
    again = plays(r.feed(Final("forty two", 8, r.at(0.3))))  # above max 20: no match
    assert again[0].text == "How many people live in your home?"
    assert r.steps("no_match") and "household" not in r.engine.slots


def test_max_duration_hangs_up_mid_prompt(survey_yaml: str) -> None:
    r = Run(survey_yaml)
    r.start()
    playing = r.engine.playing
    out = r.feed(Tick(r.at(121.0)))
    assert playing is not None and out[0] == StopPlayback(playing)
    assert Hangup("max_duration") in out
    assert r.outcome.result == "max_duration"
    assert r.feed(Final("yes", 1, r.at())) == []  # done is done


def test_peer_gone_ends_the_dialog(survey_yaml: str) -> None:
    r = Run(survey_yaml)
    r.start()
    r.finish_prompt()
    assert Hangup("abandoned") in r.feed(PeerGone(r.at()))
    assert r.outcome.result == "abandoned"


@pytest.mark.parametrize("barge", [True, False])
def test_barge_in_can_be_disabled(barge: bool) -> None:
    doc = f"""
name: b
steps:
  - {{id: q, ask: "Long question?", expect: yes_no, barge_in: {str(barge).lower()}}}
  - {{id: bye, hangup: done}}
"""
    r = Run(doc)
    r.start()
    out = r.feed(SpeechStarted(r.at()))
    assert (len(out) > 0) is barge
