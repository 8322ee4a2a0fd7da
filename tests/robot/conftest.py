"""Fixtures of the robot tests: a survey scenario (yes/no, number, intent, with DTMF keys)."""

from __future__ import annotations

import pytest

# A question long enough to be interrupted, then a goodbye (the barge-in tests).
LONG_YAML = """
name: long
steps:
  - id: q
    ask: >-
      Before we start, let me explain in some detail how this short survey works, what we
      will do with your answers, and how long it will take. Are you happy to continue?
    expect: yes_no
  - {id: bye, say: "Thank you.", hangup: done}
"""


@pytest.fixture
def long_yaml() -> str:
    """A long yes/no question, then "Thank you." and a hang-up (outcome `done`)."""
    return LONG_YAML


SURVEY_YAML = """
name: survey
language: en
variables: [name]
steps:
  - id: hello
    say: "Hello {name}, this is a short survey from your energy supplier."
  - id: happy
    ask: "Are you happy with our service?"
    expect: yes_no
    dtmf: {"1": "yes", "2": "no"}
    no_input: {retries: 1, reprompt: "Sorry, I did not hear you. Are you happy with our service?"}
    no_match: {retries: 1, reprompt: "Please answer yes or no."}
  - id: people
    ask: "How many people live in your home?"
    expect: number
    min: 0
    max: 20
    slot: household
  - id: reason
    ask: "Are you calling about billing, or about a power cut?"
    expect: intent
    intents:
      billing: {keywords: [bill, billing, invoice], examples: ["I was charged too much"]}
      outage: {keywords: [power cut, outage, blackout], examples: ["I have no electricity"]}
    dtmf: {"1": billing, "2": outage}
    branches: {billing: bye_billing, outage: agent}
  - {id: bye_billing, say: "Thank you {name}. We will look at your bill. Goodbye.",
     hangup: completed}
  - {id: agent, say: "I am putting you through to a colleague.", transfer: {queue: outages}}
"""


@pytest.fixture
def survey_yaml() -> str:
    """Hello, a yes/no, a number slot, an intent with branches to a hang-up or a transfer."""
    return SURVEY_YAML
