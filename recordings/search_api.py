"""Search, call list, call audio, term counts, legal hold, call deletion, and the analyst page.

Every route authenticates (pipeline.auth.require) and reads only the caller's tenant:
another tenant's call is a 404, exactly as an unknown one. Query strings are parsed by
hand so that any bad parameter (unknown name, bad date, page out of range, malformed
query) is a 400 with the reason, never FastAPI's 422 or a 500.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from pipeline.api.errors import errors, files
from pipeline.auth import LINK_HELP, Principal, keys_of, require
from pipeline.calls_api import end_live_call
from pipeline.catalog import load_manifest, visible_manifest
from pipeline.ids import check_id
from pipeline.services import Services
from pipeline.store import ObjectNotFound
from recordings.index import TranscriptIndex, index_of
from recordings.index.base import (
    HL_CLOSE,
    HL_OPEN,
    CallRow,
    Filters,
    Hit,
    Interval,
    Sort,
    indexed_details,
)
from recordings.index.query import Node, QueryError
from recordings.query_params import (
    BadRequest,
    choice,
    documented,
    one,
    parse_params,
    parse_q,
)
from recordings.retention import CallHeld, delete_call_data, set_hold
from recordings.search_models import (
    CallDeleted,
    CallDetail,
    CallList,
    HoldState,
    SearchPage,
    TermStats,
)

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
MAX_STATS_QUERIES = 10
# A CSV export holds every match up to this many rows, fetched in pages of EXPORT_PAGE
# (newest first: a cap on an export should drop the oldest calls, not arbitrary ones).
EXPORT_MAX_ROWS = 10_000
EXPORT_PAGE = 500
EXPORT_COLUMNS = (
    "call_started_at",
    "call_id",
    "agent_id",
    "direction",
    "leg",
    "start",
    "end",
    "text",
)
STREAM_CHUNK = 1 << 20
RECORDING_NAMES = ("recording.wav",)
_AUDIO_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "flac": "audio/flac",
    "m4a": "audio/mp4",
    "webm": "audio/webm",
    "aac": "audio/aac",
}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

SEARCH_PARAMS = {
    "q",
    "stat",
    "tag",
    "from",
    "to",
    "agent",
    "leg",
    "direction",
    "call_id",
    "page",
    "page_size",
    "sort",
    "format",
}
CALLS_PARAMS = {"from", "to", "agent", "direction", "call_id", "page", "page_size", "stat", "tag"}
STATS_PARAMS = {
    "q",
    "interval",
    "from",
    "to",
    "agent",
    "leg",
    "direction",
    "call_id",
    "stat",
    "tag",
}

Reader = Annotated[Principal, Depends(require("analyst", "admin"))]
LinkReader = Annotated[Principal, Depends(require("analyst", "admin", links=True))]
# How long the links of a call view (audio, transcript downloads) work: an analyst's
# working session, so a page left open keeps playing.
LINK_TTL_S = 8 * 3600
Admin = Annotated[Principal, Depends(require("admin"))]


def snippet_html(snippet: str) -> str:
    """HTML-escaped snippet with matches in <mark>."""
    return html.escape(snippet).replace(HL_OPEN, "<mark>").replace(HL_CLOSE, "</mark>")


def _cell(value: str | None) -> str:
    """A free-text cell that a spreadsheet will not run as a formula: what a caller said
    (or an agent id a PBX sent) may start with = + - @ (OWASP's CSV injection)."""
    text = value or ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _export_csv(index: TranscriptIndex, tenant: str, query: Node, filters: Filters) -> str:
    """Every match as CSV (one row per utterance), newest first, up to EXPORT_MAX_ROWS."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    offset = 0
    while offset < EXPORT_MAX_ROWS:
        page = index.search(tenant, query, filters, "time", offset, EXPORT_PAGE)
        hits: list[Hit] = page.items  # type: ignore[assignment]
        for h in hits:
            writer.writerow(
                (_iso(h.call_started_at), h.call_id, _cell(h.agent_id), h.direction or "")
                + (h.leg, f"{h.start:.2f}", f"{h.end:.2f}", _cell(h.text))
            )
        offset += len(hits)
        if len(hits) < EXPORT_PAGE:
            break
    return out.getvalue()


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def recording_key(services: Services, row: CallRow | None, tenant: str, call_id: str) -> str | None:
    """Where the call's recording is: index row, manifest, or the usual names in its folder."""
    store = services.store
    manifest = load_manifest(store, tenant, call_id)
    prefixes: list[str] = []
    for src in (row, manifest):
        if src is None:
            continue
        if src.recording_key and store.exists(src.recording_key):
            return src.recording_key
        if src.prefix:
            prefixes.append(src.prefix)
    for prefix in dict.fromkeys(prefixes):
        for name in RECORDING_NAMES:
            if store.exists(prefix + name):
                return prefix + name
        for info in store.list(prefix + "recording."):
            return info.key
    return None


def _call_json(row: CallRow, tags: list[str]) -> dict[str, Any]:
    return {
        "tags": tags,
        "call_id": row.call_id,
        "started_at": _iso(row.started_at),
        "started_known": row.started_known,
        "agent_id": row.agent_id,
        "direction": row.direction,
        "caller": row.caller,
        "callee": row.callee,
        "duration": row.duration,
        "source": row.source,
        "held": row.held,
        "utterances": row.utterances,
        "audio_url": f"/v1/calls/{row.call_id}/audio",
    }


def _statistics(services: Services, tenant: str, call_id: str) -> dict[str, Any] | None:
    """The call's statistics as its transcript.json holds them (None before its end)."""
    manifest = load_manifest(services.store, tenant, call_id)
    if manifest is None or not manifest.transcript_key:
        return None
    try:
        doc = json.loads(services.store.get(manifest.transcript_key))
    except (ObjectNotFound, ValueError):
        return None
    stats: dict[str, Any] | None = doc.get("statistics")
    return stats


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive of a single `bytes=` range; None to serve the whole."""
    m = _RANGE.match(header.strip())
    if m is None:
        return None  # multiple or unknown ranges: RFC 9110 lets us send the whole object
    a, b = m.groups()
    if not a and not b:
        return None
    if not a:
        n = int(b)
        if n == 0:
            raise HTTPException(
                416, "empty suffix range", headers={"Content-Range": f"bytes */{size}"}
            )
        return max(0, size - n), size - 1
    first = int(a)
    last = min(int(b), size - 1) if b else size - 1
    if first >= size or (b and int(b) < first):
        raise HTTPException(
            416,
            f"range not satisfiable for {size} bytes",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return first, last


def router(services: Services) -> APIRouter:
    """The analysts' routes and page."""
    r = APIRouter()
    metrics = services.metrics

    def bad(exc: BadRequest, route: str) -> HTTPException:
        metrics.inc("api_rejections_total", route=route, cause="bad_request")
        return HTTPException(400, str(exc))

    def visible_call(p: Principal, call_id: str) -> CallRow:
        """The call's row if the caller's tenant has it; 404 otherwise, never a hint."""
        try:
            check_id(call_id, "call_id")
        except ValueError:
            raise HTTPException(404, "no such call") from None
        row = index_of(services).get_call(p.tenant, call_id)
        if row is None:
            manifest = visible_manifest(services.store, p, call_id)
            if manifest is None:
                raise HTTPException(404, "no such call")
            row = CallRow(
                **indexed_details(manifest),
                started_known=True,
                prefix=manifest.prefix,
                recording_key=manifest.recording_key,
                duration=None,
                source=None,
                held=False,
                utterances=0,
            )
        return row

    @r.get(
        "/v1/search",
        response_model=SearchPage,
        openapi_extra=documented(SEARCH_PARAMS, ("q",)),
        responses={200: {"content": {"text/csv": {}}, "description": "hits, or CSV"}},
    )
    def search(request: Request, principal: Reader) -> dict[str, Any] | Response:
        """Utterances matching `q` within the caller's tenant, with snippets and audio links.

        `format=csv` exports every match (newest first, at most 10,000 rows) as a CSV file
        instead of one page."""
        try:
            params = parse_params(request, SEARCH_PARAMS)
            query = parse_q(one(request, "q"))
            sort = choice(one(request, "sort"), "sort", get_args(Sort)) or "relevance"
            as_csv = choice(one(request, "format"), "format", ("json", "csv")) == "csv"
        except BadRequest as exc:
            raise bad(exc, "search") from None
        index = index_of(services)
        if as_csv:
            try:
                body = _export_csv(index, principal.tenant, query, params.filters)
            except QueryError as exc:
                raise bad(BadRequest(f"bad query: {exc}"), "search") from None
            metrics.inc("search_exports_total")
            return Response(
                body,
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": 'attachment; filename="search.csv"'},
            )
        try:
            page = index.search(
                principal.tenant,
                query,
                params.filters,
                sort,  # type: ignore[arg-type]
                (params.page - 1) * params.page_size,
                params.page_size,
            )
        except QueryError as exc:
            raise bad(BadRequest(f"bad query: {exc}"), "search") from None
        metrics.inc("searches_total")
        hits: list[Hit] = page.items  # type: ignore[assignment]
        presigned: dict[str, str | None] = {}
        for cid in {h.call_id for h in hits}:
            presigned[cid] = _presigned(principal.tenant, cid)
        return {
            "q": one(request, "q"),
            "total": page.total,
            "total_exact": page.exact,
            "page": params.page,
            "page_size": params.page_size,
            "sort": sort,
            "hits": [
                {
                    "call_id": h.call_id,
                    "utterance_id": h.utterance_id,
                    "leg": h.leg,
                    "start": h.start,
                    "end": h.end,
                    "text": h.text,
                    "snippet": snippet_html(h.snippet),
                    "call_started_at": _iso(h.call_started_at),
                    "agent_id": h.agent_id,
                    "direction": h.direction,
                    "score": round(h.score, 4),
                    "audio": {
                        "url": f"/v1/calls/{h.call_id}/audio",
                        "start": h.start,
                        "presigned_url": (
                            f"{presigned[h.call_id]}#t={h.start:.2f}"
                            if presigned[h.call_id]
                            else None
                        ),
                    },
                }
                for h in hits
            ],
        }

    def _presigned(tenant: str, call_id: str) -> str | None:
        row = index_of(services).get_call(tenant, call_id)
        key = row.recording_key if row else None
        if not key:
            return None
        try:
            return services.store.presigned_url(key, 3600)
        except Exception:  # a link is a convenience; the streaming route still works
            log.warning("no presigned URL for %s", key)
            return None

    @r.get("/v1/calls", response_model=CallList, openapi_extra=documented(CALLS_PARAMS))
    def list_calls(request: Request, principal: Reader) -> dict[str, Any]:
        """The caller's tenant's calls, newest first, with filters and paging."""
        try:
            params = parse_params(request, CALLS_PARAMS)
        except BadRequest as exc:
            raise bad(exc, "calls") from None
        page = index_of(services).list_calls(
            principal.tenant,
            params.filters,
            (params.page - 1) * params.page_size,
            params.page_size,
        )
        rows: list[CallRow] = page.items  # type: ignore[assignment]
        tags = index_of(services).call_tags(principal.tenant, [r.call_id for r in rows])
        return {
            "total": page.total,
            "page": params.page,
            "page_size": params.page_size,
            "calls": [_call_json(row, tags.get(row.call_id, [])) for row in rows],
        }

    @r.get("/v1/calls/{call_id}", response_model=CallDetail)
    def get_call(call_id: str, principal: Reader) -> dict[str, Any]:
        """A call's metadata and its indexed utterances (both legs, speaking order).

        `links` are URLs that work without the key for a few hours (the page's player
        streams the audio with them, its download buttons fetch the transcript)."""
        row = visible_call(principal, call_id)
        index = index_of(services)
        utterances = index.call_utterances(principal.tenant, call_id)
        tags = index.call_tags(principal.tenant, [call_id]).get(call_id, [])
        keys = keys_of(services)
        links = {}
        for name, path in (
            ("audio", f"/v1/calls/{call_id}/audio"),
            ("transcript", f"/v1/calls/{call_id}/transcript"),
        ):
            token = keys.sign_link(principal, path, LINK_TTL_S)
            links[name] = f"{path}?link={token}" if token else path
        return {
            **_call_json(row, tags),
            "statistics": _statistics(services, principal.tenant, call_id),
            "links": links,
            "transcript": [
                {
                    "utterance_id": u.utterance_id,
                    "leg": u.leg,
                    "start": u.start,
                    "end": u.end,
                    "text": u.text,
                    "source": u.source,
                }
                for u in utterances
            ],
        }

    @r.get(
        "/v1/calls/{call_id}/audio",
        response_class=StreamingResponse,
        responses=files("the call's recording", *sorted(set(_AUDIO_TYPES.values())), partial=True),
    )
    def get_audio(
        call_id: str,
        request: Request,
        principal: LinkReader,
        link: Annotated[str | None, Query(description=LINK_HELP, max_length=200)] = None,
    ) -> Response:
        """The call's recording, streamed; a single `Range: bytes=` is honoured (206)."""
        row = visible_call(principal, call_id)
        key = recording_key(services, row, principal.tenant, call_id)
        if key is None:
            raise HTTPException(404, "this call has no recording")
        store = services.store
        try:
            size = store.stat(key).size
        except ObjectNotFound:
            raise HTTPException(404, "this call has no recording") from None
        media_type = _AUDIO_TYPES.get(key.rsplit(".", 1)[-1].lower(), "application/octet-stream")
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=300"}
        rng = _parse_range(request.headers["range"], size) if "range" in request.headers else None
        first, last, status = (0, size - 1, 200) if rng is None else (*rng, 206)
        if status == 206:
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        headers["Content-Length"] = str(max(0, last - first + 1))

        def body() -> Iterator[bytes]:
            pos = first
            while pos <= last:
                n = min(STREAM_CHUNK, last - pos + 1)
                chunk = store.get_range(key, pos, n)
                if not chunk:
                    return
                yield chunk
                pos += len(chunk)

        metrics.inc("audio_streams_total", status=str(status))
        return StreamingResponse(body(), status_code=status, media_type=media_type, headers=headers)

    @r.get(
        "/v1/stats/terms",
        response_model=TermStats,
        openapi_extra=documented(STATS_PARAMS, ("q",)),
    )
    def term_stats(request: Request, principal: Reader) -> dict[str, Any]:
        """Matching utterances and calls per day, week or month, one series per `q`."""
        try:
            params = parse_params(request, STATS_PARAMS)
            raw = request.query_params.getlist("q")
            if not raw:
                raise BadRequest("'q' is required (repeat it to count several terms)")
            if len(raw) > MAX_STATS_QUERIES:
                raise BadRequest(f"at most {MAX_STATS_QUERIES} 'q' parameters")
            queries = [(q, parse_q(q)) for q in raw]
            interval = choice(one(request, "interval"), "interval", get_args(Interval)) or "day"
        except BadRequest as exc:
            raise bad(exc, "stats") from None
        index = index_of(services)
        series = []
        for text, node in queries:
            try:
                buckets = index.term_counts(
                    principal.tenant,
                    node,
                    params.filters,
                    interval,  # type: ignore[arg-type]
                )
            except QueryError as exc:
                raise bad(BadRequest(f"bad query: {exc}"), "stats") from None
            series.append(
                {
                    "q": text,
                    "total": sum(b.utterances for b in buckets),
                    "buckets": [
                        {"period": b.period, "utterances": b.utterances, "calls": b.calls}
                        for b in buckets
                    ],
                }
            )
        return {"interval": interval, "series": series}

    @r.post("/v1/calls/{call_id}/hold", response_model=HoldState)
    def place_hold(call_id: str, principal: Admin) -> dict[str, Any]:
        """Legal hold: retention and deletion leave the call alone until it is lifted."""
        visible_call(principal, call_id)
        if not set_hold(services, principal.tenant, call_id, True, principal.key_id):
            raise HTTPException(404, "no such call")
        return {"call_id": call_id, "held": True}

    @r.delete("/v1/calls/{call_id}/hold", response_model=HoldState)
    def lift_hold(call_id: str, principal: Admin) -> dict[str, Any]:
        """Lift a legal hold."""
        visible_call(principal, call_id)
        if not set_hold(services, principal.tenant, call_id, False, principal.key_id):
            raise HTTPException(404, "no such call")
        return {"call_id": call_id, "held": False}

    @r.delete(
        "/v1/calls/{call_id}",
        response_model=CallDeleted,
        response_model_exclude_none=True,
        responses=errors(409),
    )
    def delete_call(call_id: str, principal: Admin) -> dict[str, Any]:
        """Delete a call's objects, then its index rows; a live call is ended first. 409 while
        the call is held."""
        ended = end_live_call(services, principal.tenant, call_id)
        try:
            removed = delete_call_data(services, principal.tenant, call_id)
        except CallHeld as exc:
            metrics.inc("api_rejections_total", route="calls", cause="held")
            raise HTTPException(409, str(exc)) from None
        if removed is None and ended is None:
            metrics.inc("api_rejections_total", route="calls", cause="unknown")
            raise HTTPException(404, "no such call")
        return {
            "call_id": call_id,
            "deleted": removed is not None,
            **(removed or {}),
            **({"ended": ended} if ended else {}),
        }

    @r.get("/", include_in_schema=False)
    def analyst_page() -> FileResponse:
        """The analyst page (plain HTML, JS and CSS; no build step)."""
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    @r.get("/web/{name}", include_in_schema=False)
    def web_asset(name: str) -> FileResponse:
        """The page's script and style sheet."""
        types = {"app.js": "text/javascript", "app.css": "text/css"}
        if name not in types:
            raise HTTPException(404, "no such file")
        return FileResponse(WEB_DIR / name, media_type=types[name])

    return r
