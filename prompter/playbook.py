"""A tenant's playbook: rules that turn what is said (or not said) on a call into hints.

```yaml
name: retention
variables: {offer: "two months free"}
rules:
  - id: retention
    when: {phrases: ["cancel my contract", "résilier"], leg: customer}
    hint: {kind: script, title: Retention, text: "They said '{matched}': offer {offer}."}
  - id: recording-notice
    absent: {phrases: ["this call is recorded"], leg: agent, within_s: 30}
    hint: {kind: compliance, title: Recording notice, text: "Say the call is recorded."}
  - id: hold
    silence: {for_s: 20}
    hint: {kind: alert, title: Silence, text: "Tell the customer you are still there."}
```
The models accept any structure they can type; `prompter.validate` adds the checks that
need the whole playbook (regexes, references, placeholders) and reports every error.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LegFilter = Literal["agent", "customer", "any"]
HintKind = Literal["script", "compliance", "knowledge", "alert"]
RULE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
PLACEHOLDER = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
# What every hint text may use, besides the playbook's variables and named regex groups.
BASE_PLACEHOLDERS = frozenset(
    {"matched", "leg", "rule", "call_id", "agent_id", "caller", "callee", "direction"}
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Said(_Model):
    """Words to look for: phrases and keywords (inflected, accent- and case-blind), regexes."""

    phrases: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    regex: tuple[str, ...] = ()
    inflect: bool = True  # False: words must match as written (accents and case still folded)
    leg: LegFilter = "any"


class When(Said):
    """Fire when the words are said, optionally only early in the call or after a rule."""

    within_s: float | None = Field(default=None, gt=0)  # only in the first N s of the call
    after: str | None = None  # only once this rule (same playbook) has fired on the call


class Absent(Said):
    """Fire when the words were NOT said by `leg` within the first `within_s` of the call."""

    leg: LegFilter = "agent"
    within_s: float = Field(gt=0)


class Silence(_Model):
    """Fire when `leg` (any: no one) has not spoken for `for_s` seconds."""

    for_s: float = Field(gt=0)
    leg: LegFilter = "any"


class HintSpec(_Model):
    """What the agent sees. `text` may hold {placeholders}; `cooldown_s` None: the default."""

    kind: HintKind
    title: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=4000)
    priority: int = Field(default=0, ge=0, le=100)
    cooldown_s: float | None = Field(default=None, ge=0)


class Rule(_Model):
    """One trigger (exactly one of when, absent, silence) and its hint."""

    id: str = Field(pattern=RULE_ID)
    when: When | None = None
    absent: Absent | None = None
    silence: Silence | None = None
    hint: HintSpec

    @property
    def trigger(self) -> When | Absent | Silence:
        """The rule's one trigger (validation guarantees there is exactly one)."""
        trig = self.when or self.absent or self.silence
        if trig is None:
            raise ValueError(f"rule {self.id} has no trigger")
        return trig


class Playbook(_Model):
    """A named set of rules of one tenant; several playbooks of a tenant apply together."""

    name: str | None = None
    language: str | None = Field(default=None, min_length=2, max_length=3)
    description: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
