"""docs/events.md, made from the code: the WebSockets (each module's own description) and
every event's schema (pipeline/events.py), so that a client developer reads what the
server does. `python -m app.events_doc > docs/events.md`; a test fails when the file is
not what this prints."""

from __future__ import annotations

import inspect
import sys
from types import ModuleType
from typing import Any

import prompter.api
import stt.live_api
from pipeline import events
from pipeline.ingest import audiosocket, l16, twilio
from pipeline.topics import short_topic
from pipeline.webhooks import delivery

SOCKETS: list[tuple[str, ModuleType]] = [
    ("/v1/calls/{call_id}/live: a call's transcript as it is said", stt.live_api),
    ("/v1/agents/{agent_id}/hints: an agent's hints", prompter.api),
    ("/v1/media/twilio: Twilio Media Streams in (and the voicebot's audio out)", twilio),
    ("/v1/media/l16: raw L16 media in (jambonz, FreeSWITCH)", l16),
    ("AudioSocket (TCP, not HTTP): Asterisk's media in and out", audiosocket),
]


def _type_of(prop: dict[str, Any]) -> str:
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "anyOf" in prop:
        return " or ".join(_type_of(p) for p in prop["anyOf"])
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if prop.get("type") == "array":
        return f"list of {_type_of(prop.get('items', {}))}"
    return str(prop.get("type", "any"))


def _fields(model: type[events.BaseModel]) -> list[str]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    rows = ["| field | type | required | default |", "| --- | --- | --- | --- |"]
    for name, prop in schema.get("properties", {}).items():
        default = prop.get("default")
        shown = "" if name in required or default is None else f"`{default}`"
        rows.append(
            f"| `{name}` | {_type_of(prop)} | {'yes' if name in required else ''} | {shown} |"
        )
    return rows


def render() -> str:
    """The page."""
    out = [
        "# WebSockets and events",
        "",
        "Made by `python -m app.events_doc` from the code (the WebSocket modules' own",
        "descriptions and the models of `pipeline/events.py`); do not edit by hand.",
        "",
        "Every WebSocket takes the API key as `?key=` (browsers cannot set headers on a",
        "WebSocket) or `Authorization: Bearer`. Messages are JSON text frames; each is one",
        "of the events below, as its `type` says.",
        "",
        "## WebSockets",
        "",
    ]
    for title, module in SOCKETS:
        out += [f"### {title}", "", inspect.cleandoc(module.__doc__ or ""), ""]
    out += [
        "## Webhooks",
        "",
        inspect.cleandoc(delivery.__doc__ or ""),
        "",
        "The body: `{id, type, tenant, call_id, sent, data}`; `data` holds the event's",
        "fields below (a transcript.ready gives `transcript_url` instead of store paths).",
        "",
        "## Events",
        "",
        "On the bus, each type travels on one topic (`{prefix}{topic}`, prefix `callpipe.`).",
        "",
    ]
    models = [
        m
        for _, m in inspect.getmembers(events, inspect.isclass)
        if issubclass(m, events.Event) and m is not events.Event
    ]
    for model in sorted(models, key=lambda m: str(m.model_fields["type"].default)):
        kind = str(model.model_fields["type"].default)
        topic = short_topic(kind)
        doc = inspect.cleandoc(model.__doc__ or "")
        out += [f"### `{kind}` (topic `{topic}`)", "", doc, "", *_fields(model), ""]
    out += ["## Parts of events", ""]
    for part in (events.Word, events.HintTrigger, events.LegInfo, events.MediaPeer):
        out += [f"### {part.__name__}", "", inspect.cleandoc(part.__doc__ or ""), ""]
        out += [*_fields(part), ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
