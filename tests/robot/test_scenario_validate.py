"""Scenario validation: every error at once, each with its path."""

from __future__ import annotations

import pytest

from robot.scenario import render
from robot.validate import ScenarioInvalid, load_scenario


def test_survey_is_valid(survey_yaml: str) -> None:
    sc = load_scenario(survey_yaml)
    assert [s.kind for s in sc.steps] == ["say", "ask", "ask", "ask", "hangup", "transfer"]
    assert sc.first == "hello"
    assert sc.slots() == {"happy", "household", "reason"}
    assert sc.after(sc.step("hello")) == "happy"


def test_json_accepted(survey_yaml: str) -> None:
    import json

    import yaml

    assert load_scenario(json.dumps(yaml.safe_load(survey_yaml))).name == "survey"


BROKEN = """
name: broken
variables: [name]
steps:
  - id: a
    say: "Hello {name}, your code is {code} and {unknown_thing}."
    next: nowhere
  - id: b
    ask: "Yes or no?"
    expect: yes_no
    branches: {yes: c, maybe: c}
    dtmf: {"1": "yes", "x": "no", "2": "perhaps"}
    no_input: {then: ghost}
  - id: c
    ask: "Your postcode?"
    expect: free_text
    pattern: "([0-9]+"
  - id: d
    ask: "How many?"
    expect: number
    branches: {"3": c}
  - id: island
    say: "Nobody comes here."
    hangup: done
  - id: a
    hangup: done
  - id: bad
    wat: 1
"""


def test_every_error_reported_with_its_path() -> None:
    with pytest.raises(ScenarioInvalid) as err:
        load_scenario(BROKEN)
    got = {(e.path, e.message.split(" ")[0]) for e in err.value.errors}
    paths = [e.path for e in err.value.errors]
    text = str(err.value)
    # unknown step references
    assert "steps[0].next" in paths and "unknown step 'nowhere'" in text
    assert "steps[1].no_input.then" in paths
    # missing slots / variables in text
    assert "{code} is neither a declared variable nor a slot" in text
    assert "{unknown_thing}" in text
    # bad branch keys and DTMF keys
    assert "steps[1].branches.maybe" in paths
    assert "steps[1].dtmf.x" in paths and "steps[1].dtmf.2" in paths
    assert "steps[3].branches.3" in paths
    # bad regex
    assert "steps[2].pattern" in paths and "invalid regular expression" in text
    # duplicate ids and the unknown field of the last step
    assert "steps[5].id" in paths
    assert any(p.startswith("steps[6]") for p in paths)
    assert len(got) >= 9


def test_unreachable_step_and_dead_end() -> None:
    doc = """
name: u
steps:
  - {id: a, say: "Hi", next: c}
  - {id: b, say: "Never said"}
  - {id: c, ask: "Anything?"}
"""
    with pytest.raises(ScenarioInvalid) as err:
        load_scenario(doc)
    msgs = [str(e) for e in err.value.errors]
    assert "steps[1]: step 'b' is unreachable from 'a'" in msgs
    assert any(m.startswith("steps[2]: the last step must hang up") for m in msgs)


def test_header_and_structure_errors() -> None:
    for doc, needle in [
        ("- a list", "a scenario is a mapping"),
        ("name: x\nsteps: []", "steps: a non-empty list"),
        ("name: x\nlanguage: de\nsteps: [{id: a, hangup: ok}]", "language"),
        ("name: x\nsteps: [{id: a, hangup: ok}]\nstart: zz", "start: unknown step 'zz'"),
        ("name: x\nsteps: [{id: a, say: hi, ask: what}]", "either say or ask"),
        (
            "name: x\nsteps: [{id: a, transfer: {queue: q, number: '+331'}}]",
            "exactly one of queue or number",
        ),
        ("{not json", "not valid"),
        ("name: x\nsteps: [{id: a, ask: 'Why?', expect: intent}]", "needs intents"),
        (
            "name: x\nsteps: [{id: a, ask: 'n?', expect: number, min: 5, max: 1, next: b},"
            " {id: b, hangup: ok}]",
            "min is above max",
        ),
    ]:
        with pytest.raises(ScenarioInvalid) as err:
            load_scenario(doc)
        assert needle in str(err.value), (doc, str(err.value))


def test_regex_catastrophic_backtracking_refused() -> None:
    doc = "name: x\nsteps: [{id: a, ask: 'code?', pattern: '(a+)+$', next: b}, {id: b, hangup: ok}]"
    with pytest.raises(ScenarioInvalid) as err:
        load_scenario(doc)
    assert err.value.errors[0].path == "steps[0].pattern"


def test_render_fills_variables_and_slots() -> None:
    from datetime import date

    assert (
        render("Hello {name}, {n} people on {d}.", {"name": "Ana", "n": 3, "d": date(2026, 3, 3)})
        == "Hello Ana, 3 people on March 3."
    )
    assert render("Le {d}, {ok}.", {"d": date(2026, 3, 3), "ok": "yes"}, "fr") == "Le 3 mars, oui."


@pytest.mark.parametrize(
    ("steps", "path", "message"),
    [
        (
            '[{id: q, ask: "Again?", expect: yes_no, next: q}, {id: end, hangup: done}]',
            "steps[0].next",
            "step 'q' leads to itself",
        ),
        (
            '[{id: s, say: "Hello", next: s}, {id: end, hangup: done}]',
            "steps[0]",
            "loop without input: s -> s",
        ),
        (
            '[{id: a, say: "A", next: b}, {id: b, say: "B", next: a}, {id: end, hangup: done}]',
            "steps[0]",
            "loop without input: a -> b -> a",
        ),
    ],
)
def test_loops_that_never_wait_for_the_caller_are_refused(
    steps: str, path: str, message: str
) -> None:
    """As the IVR validator refuses a menu that loops without input."""
    with pytest.raises(ScenarioInvalid) as err:
        load_scenario(f"name: loop\nsteps: {steps}\n")
    assert any(e.path == path and message in e.message for e in err.value.errors), err.value
