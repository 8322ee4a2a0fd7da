"""Call categories: a tenant's rules over a finished call's transcript, each call tagged at
its end with the categories it meets (tags are search filters).

The rules are the prompter's words (`prompter.playbook.Said`: phrases and keywords,
inflected, accent- and case-blind, regexes, a leg) and its matcher; what a category adds is
where in the call (the first `within_s`, the last `last_s` seconds) and that all of its
conditions must hold: words said, words not said (a required disclosure), both.

```yaml
categories:
  - id: churn-risk
    title: Churn risk
    said: [{phrases: ["cancel my contract", "résilier"], leg: customer}]
  - id: missing-recording-notice
    title: No recording notice
    not_said: [{phrases: ["this call is recorded", "cet appel est enregistré"],
                leg: agent, within_s: 30}]
```
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.config import PrompterSettings
from pipeline.events import Utterance
from prompter.matcher import RuleSet
from prompter.playbook import RULE_ID, HintSpec, Playbook, Rule, Said, When
from prompter.validate import (
    PlaybookError,
    PlaybookInvalid,
    check_said,
    parse_playbook_text,
    pydantic_errors,
)

MAX_CATEGORIES = 200


class Words(Said):
    """Words to look for, by a leg, optionally only in part of the call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    within_s: float | None = Field(default=None, gt=0, description="only in the first N s")
    last_s: float | None = Field(default=None, gt=0, description="only in the last N s")


class Category(BaseModel):
    """A call is in the category when every `said` is found and no `not_said` is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=RULE_ID)
    title: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    said: tuple[Words, ...] = ()
    not_said: tuple[Words, ...] = ()

    @model_validator(mode="after")
    def _has_conditions(self) -> Category:
        if not self.said and not self.not_said:
            raise ValueError(f"category {self.id} needs `said` or `not_said`")
        return self


class Categories(BaseModel):
    """A tenant's categories (one document per tenant)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    categories: tuple[Category, ...] = Field(default=(), max_length=MAX_CATEGORIES)

    @model_validator(mode="after")
    def _unique_ids(self) -> Categories:
        ids = [c.id for c in self.categories]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"category ids used twice: {', '.join(twice)}")
        return self


def _rule_id(category: int, condition: int) -> str:
    """A condition's rule id: by position, as a category's own id may be as long as a rule
    id may be."""
    return f"c{category}.{condition}"


def _as_playbook(categories: Categories) -> Playbook:
    """Each condition as a prompter rule (its hint is never shown): the matcher then reads
    every category's words in one pass per utterance."""
    hint = HintSpec(kind="alert", title="category", text="category")
    rules = [
        Rule(
            id=_rule_id(k, n),
            when=When(**w.model_dump(exclude={"within_s", "last_s"})),
            hint=hint,
        )
        for k, c in enumerate(categories.categories)
        for n, w in enumerate((*c.said, *c.not_said))
    ]
    return Playbook(name="categories", rules=tuple(rules))


def parse_categories(text: str | bytes, fmt: str, settings: PrompterSettings) -> Categories:
    """A tenant's categories from YAML or JSON, or PlaybookInvalid listing every problem
    with its path (the words are checked as a playbook's are)."""
    raw = parse_playbook_text(text, fmt)
    if not isinstance(raw, dict):
        raise PlaybookInvalid([PlaybookError("", "a mapping with a 'categories' list")])
    errors: list[PlaybookError] = []
    raw_list = raw.get("categories")
    for i, c in enumerate(raw_list if isinstance(raw_list, list) else []):
        for part in ("said", "not_said"):
            items = c.get(part) if isinstance(c, dict) else None
            for j, words in enumerate(items if isinstance(items, list) else []):
                if isinstance(words, dict):
                    errors += check_said(f"categories[{i}].{part}[{j}]", words, settings)
    try:
        categories = Categories.model_validate(raw)
    except ValidationError as exc:
        errors += pydantic_errors("", exc)
    if errors:
        raise PlaybookInvalid(errors)
    return categories


class Tagger:
    """A tenant's categories compiled once, to tag many calls."""

    def __init__(self, categories: Categories, regex_timeout_ms: int) -> None:
        self.categories = categories
        self._rules = RuleSet(
            [("categories", _as_playbook(categories))],
            default_cooldown_s=0.0,
            regex_timeout_ms=regex_timeout_ms,
        )

    def tags(self, utterances: Sequence[Utterance], duration: float) -> list[str]:
        """The ids of the categories the call meets, in the tenant's order."""
        heard: dict[str, list[float]] = {}  # condition key -> times its words were said
        for u in utterances:
            for hit in self._rules.match(u.text, u.leg).hits:
                heard.setdefault(hit.rule.rule.id, []).append(u.start)
        out = []
        for k, c in enumerate(self.categories.categories):
            conditions = enumerate((*c.said, *c.not_said))
            found = [_within(heard.get(_rule_id(k, n), []), w, duration) for n, w in conditions]
            if all(found[: len(c.said)]) and not any(found[len(c.said) :]):
                out.append(c.id)
        return out


def _within(times: list[float], words: Words, duration: float) -> bool:
    """Whether the words were said in the part of the call the condition looks at."""
    return any(
        (words.within_s is None or t <= words.within_s)
        and (words.last_s is None or t >= duration - words.last_s)
        for t in times
    )
