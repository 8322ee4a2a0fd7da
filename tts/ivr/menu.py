"""The IVR menu document: nodes with a prompt, options by digit or keyword, and actions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Action(BaseModel):
    """What happens next: goto a node, transfer, voicemail, hang up, or branch on hours."""

    kind: Literal["goto", "transfer", "voicemail", "hangup", "hours"]
    node: str | None = None  # goto
    queue: str | None = None  # transfer
    extension: str | None = None  # transfer
    mailbox: str | None = None  # voicemail
    timezone: str | None = None  # hours
    # hours: day ("mon".."sun") -> ["09:00-17:00", ...]
    schedule: dict[str, list[str]] = Field(default_factory=dict)
    open: str | None = None  # hours: node when open
    closed: str | None = None  # hours: node when closed

    def targets(self) -> list[str]:
        """Nodes this action may lead to."""
        return [n for n in (self.node, self.open, self.closed) if n]


class Option(BaseModel):
    """A choice of a node, picked by a DTMF digit and/or spoken keywords."""

    digit: str | None = Field(default=None, pattern=r"^[0-9*#]$")
    keywords: list[str] = Field(default_factory=list)
    action: Action


PromptKind = Literal["prompt", "no_input", "no_match"]


class Node(BaseModel):
    """A step of the menu: a prompt, then options, or a direct action.

    The prompt is text (spoken by Piper) or `audio`, an object key under the tenant's
    prefix in the store (any format PyAV reads; converted to what the PBX asks for).
    `no_input_prompt` / `no_match_prompt` are played before the re-prompt on a retry.
    """

    prompt: str | None = None
    audio: str | None = None
    no_input_prompt: str | None = None
    no_match_prompt: str | None = None
    options: list[Option] = Field(default_factory=list)
    action: Action | None = None  # taken right after the prompt when there are no options
    timeout_s: float = Field(default=5.0, gt=0)
    retries: int = Field(default=2, ge=0)
    on_fail: Action = Field(default_factory=lambda: Action(kind="hangup"))


class Menu(BaseModel):
    """A whole menu: its start node and its nodes by name."""

    start: str
    nodes: dict[str, Node]


def prompt_text(node: Node, kind: PromptKind) -> str | None:
    """The text of one of a node's prompts (None when the node has none of that kind)."""
    return {
        "prompt": node.prompt,
        "no_input": node.no_input_prompt,
        "no_match": node.no_match_prompt,
    }[kind]
