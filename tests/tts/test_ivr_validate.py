"""Menu validation reports every error at once, each with its path."""

from typing import Any

import pytest

from tts.ivr.validate import MenuInvalid, load_menu


def test_good_menu_loads(menu_doc: dict[str, Any]) -> None:
    assert load_menu(menu_doc).start == "entry"


def test_all_errors_at_once(menu_doc: dict[str, Any]) -> None:
    doc = menu_doc
    nodes = doc["nodes"]
    nodes["main"]["options"][1]["digit"] = "1"  # digit used twice
    nodes["main"]["options"][0]["action"] = {"kind": "goto", "node": "nowhere"}
    nodes["support"]["prompt"] = None  # missing prompt
    nodes["entry"]["action"]["timezone"] = "Mars/Olympus"
    nodes["orphan"] = {"prompt": "x", "action": {"kind": "goto", "node": "orphan2"}}
    nodes["orphan2"] = {"prompt": "y", "action": {"kind": "goto", "node": "orphan"}}
    with pytest.raises(MenuInvalid) as exc:
        load_menu(doc)
    errs = "\n".join(exc.value.errors)
    for needle in [
        "nodes.main.options[1].digit: digit '1' used twice",
        "nodes.main.options[0].action: unknown target node 'nowhere'",
        "nodes.support.prompt: missing prompt",
        "nodes.entry.action.timezone: unknown timezone 'Mars/Olympus'",
        "nodes.orphan: unreachable",
        "nodes.orphan2: unreachable",
        "loop without input: orphan -> orphan2 -> orphan",
    ]:
        assert needle in errs, errs
    assert len(exc.value.errors) == 7, errs


def test_schema_errors_have_paths() -> None:
    with pytest.raises(MenuInvalid) as exc:
        load_menu(
            {
                "start": "a",
                "nodes": {"a": {"action": {"kind": "dance"}}, "b": {"options": [{"digit": "12"}]}},
            }
        )
    errs = "\n".join(exc.value.errors)
    assert "nodes.a.action.kind" in errs and "nodes.b.options.0.digit" in errs


def test_keywords_prompts_and_audio_errors(menu_doc: dict[str, Any]) -> None:
    nodes = menu_doc["nodes"]
    nodes["main"]["options"][1]["keywords"] = ["Sales", "support"]  # "sales" is options[0]'s
    nodes["main"]["no_match_prompt"] = "Sorry \x07"
    nodes["support"]["prompt"] = None
    nodes["support"]["audio"] = "../other-tenant/x.wav"
    nodes["closed"]["audio"] = "prompts/closed.wav"  # beside a text prompt, and missing
    with pytest.raises(MenuInvalid) as exc:
        load_menu(menu_doc, audio_exists=lambda key: False)
    errs = exc.value.errors
    text = "\n".join(errs)
    for needle in [
        "nodes.main.options[1].keywords[0]: keyword 'Sales' used twice (also options[0])",
        "nodes.main.no_match_prompt: control character U+0007",
        "nodes.support.audio: bad object key '../other-tenant/x.wav'",
        "nodes.closed.audio: give a prompt text or an audio key, not both",
        "nodes.closed.audio: no object 'prompts/closed.wav'",
    ]:
        assert needle in text, text
    assert len(errs) == 5, text


def test_audio_prompt_accepted_when_it_exists(menu_doc: dict[str, Any]) -> None:
    menu_doc["nodes"]["support"]["prompt"] = None
    menu_doc["nodes"]["support"]["audio"] = "prompts/support.wav"
    seen: list[str] = []

    def audio_exists(key: str) -> bool:
        seen.append(key)
        return True

    menu = load_menu(menu_doc, audio_exists=audio_exists)
    assert menu.nodes["support"].audio == "prompts/support.wav"
    assert seen == ["prompts/support.wav"]


def test_prompt_text_limit() -> None:
    doc = {"start": "a", "nodes": {"a": {"prompt": "x" * 50, "action": {"kind": "hangup"}}}}
    with pytest.raises(MenuInvalid, match=r"nodes.a.prompt: text is 50 characters"):
        load_menu(doc, max_chars=40)


def test_schedule_errors(menu_doc: dict[str, Any]) -> None:
    menu_doc["nodes"]["entry"]["action"]["schedule"] = {
        "mon": ["17:00-09:00"],
        "fun": ["09:00-17:00"],
        "tue": ["9-5"],
    }
    with pytest.raises(MenuInvalid) as exc:
        load_menu(menu_doc)
    errs = "\n".join(exc.value.errors)
    assert "nodes.entry.action.schedule.mon: range '17:00-09:00' ends before it starts" in errs
    assert "nodes.entry.action.schedule.fun: unknown day" in errs
    assert "nodes.entry.action.schedule.tue: bad range '9-5'" in errs
    assert len(exc.value.errors) == 3, errs
