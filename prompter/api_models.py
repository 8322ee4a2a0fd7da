"""The souffleur's request and answer bodies (prompter/api.py), as typed models for the
OpenAPI: a client generator builds its classes from them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from prompter.kb import Article
from prompter.playbook import Playbook

PLAYBOOK_EXAMPLE = """rules:
  - id: retention
    when: {phrases: ["cancel my contract", "résilier"], leg: customer}
    hint: {kind: script, title: Retention, text: "They said '{matched}': offer two months free."}
"""


def component_of(model: type[BaseModel]) -> tuple[dict[str, str], dict[str, Any]]:
    """A reference to `model` and the schemas to add to the OpenAPI's components (it and
    the models it uses), lifted there by pipeline.api.errors.document."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    parts = {**schema.pop("$defs", {}), model.__name__: schema}
    return {"$ref": f"#/components/schemas/{model.__name__}"}, parts


def yaml_or_json_body(model: type[BaseModel], example: str) -> dict[str, Any]:
    """`openapi_extra` of a route that reads a YAML (or JSON) `model` itself (a playbook,
    call categories), so the OpenAPI says what it takes."""
    ref, parts = component_of(model)
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/yaml": {"schema": {"type": "string"}, "example": example},
                "application/json": {"schema": ref},
            },
        },
        "x-components": parts,
    }


def playbook_body() -> dict[str, Any]:
    """`openapi_extra` of PUT /v1/playbooks/{name}."""
    return yaml_or_json_body(Playbook, PLAYBOOK_EXAMPLE)


def article_body() -> dict[str, Any]:
    """`openapi_extra` of PUT /v1/kb/articles/{article_id} (a JSON article)."""
    ref, parts = component_of(Article)
    return {
        "x-components": parts,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": ref,
                    "example": {
                        "title": "Price increase and price match",
                        "questions": ["Why did my price go up?"],
                        "answer": "Prices rose 4% on 1 January; agents may match a written offer.",
                    },
                }
            },
        },
    }


class PlaybookSaved(BaseModel):
    """A playbook stored; `version` is the tenant's, bumped by every change."""

    name: str
    rules: int
    created: bool
    version: int


class PlaybookSummary(BaseModel):
    """A playbook as listed."""

    name: str
    rules: int
    updated_at: str


class PlaybookList(BaseModel):
    """The tenant's playbooks."""

    playbooks: list[PlaybookSummary]


class PlaybookDetail(PlaybookSummary):
    """One playbook: its validated form and the text it was sent as."""

    playbook: dict[str, Any] = Field(description="the playbook as validated (see Playbook)")
    source: str


class ArticleSaved(BaseModel):
    """An article stored."""

    id: str
    created: bool
    version: int


class ArticleList(BaseModel):
    """The tenant's articles."""

    articles: list[Article]


class FeedbackSaved(BaseModel):
    """An agent's verdict recorded."""

    hint_id: str
    rule: str
    useful: bool


class RuleStats(BaseModel):
    """One rule's hints and what agents said of them (`kb:<id>` for an article)."""

    rule: str
    fired: int
    useful: int
    not_useful: int


class PrompterStats(BaseModel):
    """Per rule: hints fired and feedback."""

    rules: list[RuleStats]
