"""The tenant's call categories: PUT (YAML, or JSON with a JSON content type), GET, DELETE
/v1/categories. Calls that end after a change are tagged by the new rules; calls already
tagged keep their tags until their transcript is made again."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from pipeline.api.errors import errors
from pipeline.api.limits import BodyTooLarge, read_bounded
from pipeline.auth import Principal, require
from pipeline.logs import ctx
from pipeline.services import Services
from prompter.api_models import yaml_or_json_body
from prompter.validate import PlaybookInvalid
from recordings.categories import Categories, parse_categories
from recordings.category_store import category_store

log = logging.getLogger(__name__)

Admin = Annotated[Principal, Depends(require("admin"))]
Reader = Annotated[Principal, Depends(require("analyst", "admin"))]
EXAMPLE = """categories:
  - id: churn-risk
    title: Churn risk
    said: [{phrases: ["cancel my contract", "résilier"], leg: customer}]
  - id: no-recording-notice
    title: No recording notice
    not_said: [{phrases: ["this call is recorded"], leg: agent, within_s: 30}]
"""


class CategoriesSaved(BaseModel):
    """What was stored."""

    categories: int = Field(description="how many categories the tenant now has")


class StoredCategoriesOut(BaseModel):
    """The tenant's categories: the validated form and the text they were sent as."""

    categories: Categories
    source: str
    updated_at: str


def router(services: Services) -> APIRouter:
    """The categories routes."""
    r = APIRouter()
    settings = services.settings.prompter
    store = category_store(services)

    def reject(status: int, detail: Any, cause: str) -> HTTPException:
        services.metrics.inc("api_rejections_total", route="categories", cause=cause)
        return HTTPException(status, detail)

    @r.put(
        "/v1/categories",
        response_model=CategoriesSaved,
        openapi_extra=yaml_or_json_body(Categories, EXAMPLE),
    )
    async def put_categories(request: Request, p: Admin) -> dict[str, Any]:
        """Replace the tenant's categories (the playbooks' word rules, per call)."""
        try:
            body = await read_bounded(request, settings.max_playbook_kb * 1024)
        except BodyTooLarge as exc:
            raise reject(413, f"categories {exc}", "too_large") from None
        fmt = "json" if "json" in request.headers.get("content-type", "") else "yaml"
        try:
            categories = await asyncio.to_thread(parse_categories, body, fmt, settings)
        except PlaybookInvalid as exc:
            raise reject(422, exc.detail("categories"), "invalid_categories") from None
        store.put(p.tenant, categories, body.decode())
        log.info("categories replaced (%d)", len(categories.categories), **ctx(p.tenant, None))
        return {"categories": len(categories.categories)}

    @r.get("/v1/categories", response_model=StoredCategoriesOut, responses=errors(404))
    def get_categories(p: Reader) -> dict[str, Any]:
        """The tenant's categories."""
        stored = store.get(p.tenant)
        if stored is None:
            raise HTTPException(404, "this tenant has no categories")
        return {
            "categories": stored.categories,
            "source": stored.source,
            "updated_at": stored.updated_at,
        }

    @r.delete("/v1/categories", status_code=204, responses=errors(404))
    def delete_categories(p: Admin) -> None:
        """Drop the tenant's categories (calls ending from now on get no tags)."""
        if not store.delete(p.tenant):
            raise HTTPException(404, "this tenant has no categories")

    return r
