"""Scenario documents (YAML or JSON): the steps a voicebot goes through.

A step is one of: `say` (a sentence, then `next`), `ask` (a question with an expected
answer, branches, slot filling with confirmation, retries and DTMF), `transfer` (to a
queue or a number) and `hangup` (with an outcome). Text holds `{placeholders}`: the
call's variables, or slots filled by earlier answers. Example::

    name: reminder
    language: en
    variables: [name]
    steps:
      - {id: hello, say: "Hello {name}, this is your energy supplier."}
      - id: pay
        ask: "Can you pay this week?"
        expect: yes_no
        dtmf: {"1": "yes", "2": "no"}
        branches: {"yes": thanks, "no": agent}
      - {id: thanks, say: "Thank you, goodbye.", hangup: completed}
      - {id: agent, transfer: {queue: billing}}

`validate.load_scenario` builds these models and reports every error at once.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
ID = r"^[A-Za-z0-9_.-]{1,64}$"
Expect = Literal["yes_no", "number", "date", "intent", "free_text"]
EXPECTS: tuple[str, ...] = ("yes_no", "number", "date", "intent", "free_text")
DTMF_KEYS = "0123456789*#"
_MONTHS = {
    "en": [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
    "fr": [
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ],
}
_YES_NO = {"en": {"yes": "yes", "no": "no"}, "fr": {"yes": "oui", "no": "non"}}


class Intent(BaseModel):
    """One intent an answer may carry: keywords (any one suffices) and example phrases."""

    model_config = ConfigDict(extra="forbid")

    keywords: list[str] = Field(default_factory=list)
    examples: list[str] = Field(default_factory=list)


class Retry(BaseModel):
    """What to do when nothing (no_input) or nothing usable (no_match) was heard."""

    model_config = ConfigDict(extra="forbid")

    retries: int = Field(default=2, ge=0, le=10)
    reprompt: str | None = None  # said before the question is asked again
    then: str | None = None  # step after the last retry; default: hang up
    outcome: str | None = None  # outcome of that hang-up (default: no_input / no_match)


class TransferTarget(BaseModel):
    """Where a human takes over: a queue of the PBX or an E.164 number."""

    model_config = ConfigDict(extra="forbid")

    queue: str | None = None
    number: str | None = None

    @model_validator(mode="after")
    def _one(self) -> TransferTarget:
        if (self.queue is None) == (self.number is None):
            raise ValueError("give exactly one of queue or number")
        return self


class Step(BaseModel):
    """One step; its kind follows from which of say/ask/transfer/hangup it holds."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ID)
    say: str | None = None
    ask: str | None = None
    transfer: TransferTarget | None = None
    hangup: str | None = Field(default=None, pattern=ID)  # the outcome
    next: str | None = None
    # --- ask ---
    expect: Expect = "free_text"
    slot: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    intents: dict[str, Intent] = Field(default_factory=dict)
    pattern: str | None = None  # free_text: the answer must match (the match is the value)
    min: float | None = None
    max: float | None = None
    dtmf: dict[str, str] = Field(default_factory=dict)  # key -> answer (yes/no or intent)
    dtmf_max_digits: int = Field(default=12, ge=1, le=32)  # number entry, `#` ends it early
    branches: dict[str, str] = Field(default_factory=dict)  # answer -> step id
    confirm: str | None = None  # "You said {value}, is that right?"
    no_input: Retry = Field(default_factory=Retry)
    no_match: Retry = Field(default_factory=Retry)
    timeout_s: float | None = Field(default=None, gt=0, le=60)
    barge_in: bool = True

    @property
    def kind(self) -> str:
        """hangup, transfer, ask or say."""
        if self.hangup is not None:
            return "hangup"
        if self.transfer is not None:
            return "transfer"
        if self.ask is not None:
            return "ask"
        return "say"

    @property
    def slot_name(self) -> str:
        """Where an ask step's answer is kept."""
        return self.slot or self.id.replace("-", "_").replace(".", "_")


class Scenario(BaseModel):
    """A whole scenario: header, then steps in order (the first is the start)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=ID)
    language: Literal["en", "fr"] = "en"
    variables: list[str] = Field(default_factory=list)
    start: str | None = None
    max_duration_s: float | None = Field(default=None, gt=0)
    steps: tuple[Step, ...] = ()

    def step(self, step_id: str) -> Step:
        """The step with this id (KeyError when none)."""
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    @property
    def first(self) -> str:
        """Id of the step the dialog starts with."""
        return self.start or self.steps[0].id

    def after(self, step: Step) -> str | None:
        """Where a step goes by default: `next`, else the following step in the list."""
        if step.next is not None:
            return step.next
        ids = [s.id for s in self.steps]
        i = ids.index(step.id)
        return ids[i + 1] if i + 1 < len(ids) else None

    def slots(self) -> set[str]:
        """Every slot an ask step fills."""
        return {s.slot_name for s in self.steps if s.kind == "ask"}


def spoken(value: Any, language: str) -> str:
    """A slot or variable value as it is read out."""
    if isinstance(value, bool):
        return _YES_NO[language]["yes" if value else "no"]
    if isinstance(value, date):
        month = _MONTHS[language][value.month - 1]
        return f"{value.day} {month}" if language == "fr" else f"{month} {value.day}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if value in ("yes", "no"):
        return _YES_NO[language][str(value)]
    return str(value)


def render(text: str, values: dict[str, Any], language: str = "en") -> str:
    """Fill `{placeholders}`; a name without a value is left out (validation forbids them)."""
    return PLACEHOLDER.sub(
        lambda m: spoken(values[m[1]], language) if m[1] in values else "", text
    ).strip()


def placeholders(text: str) -> list[str]:
    """Names referenced in a text."""
    return PLACEHOLDER.findall(text)
