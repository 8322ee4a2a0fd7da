"""Recording upload and transcript routes (the batch path's HTTP face)."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from pipeline.api.errors import errors, files
from pipeline.auth import LINK_HELP, Principal, require
from pipeline.bus.base import BusError
from pipeline.catalog import load_manifest, recording_manifest, save_manifest, visible_manifest
from pipeline.events import RecordingReady, Utterance
from pipeline.ids import call_key, check_id
from pipeline.languages import check_language
from pipeline.logs import ctx
from pipeline.media.audio_file import AudioError, AudioLimits, AudioRefused, probe_audio
from pipeline.services import Services
from pipeline.store import ObjectNotFound, StoreError
from recordings.transcripts import from_document, to_document, to_srt, to_txt, to_vtt
from stt.batch import ChannelMismatch, check_channels, parse_channels
from stt.live_state import live_so_far

log = logging.getLogger(__name__)

_EXT = {
    "wav": "wav",
    "mp3": "mp3",
    "ogg": "ogg",
    "flac": "flac",
    "opus": "ogg",
    "m4a": "m4a",
    "webm": "webm",
    "aac": "aac",
    "mov,mp4,m4a,3gp,3g2,mj2": "m4a",
    "matroska,webm": "webm",
}


def _bad(services: Services, status: int, reason: str, cause: str) -> HTTPException:
    services.metrics.inc("api_rejections_total", route="recordings", cause=cause)
    return HTTPException(status, reason)


# Seconds a client is asked to wait before sending again an upload refused with 503.
RETRY_AFTER_S = 5


def _store_and_queue(
    services: Services,
    event: RecordingReady,
    key: str,
    data: bytes,
    content_type: str | None,
) -> None:
    """The recording and its `queued` manifest stored, then the job on the bus (flushed):
    a restart re-drives every manifest still queued (recordings/recovery.py).

    The producer rides out a broker that restarts within the flush timeout; past it the
    job is not accepted (BusError), and its manifest says so rather than `queued`."""
    store = services.store
    existing = load_manifest(store, event.tenant, event.call_id)
    if existing is not None and existing.recording_key and existing.recording_key != key:
        store.delete(existing.recording_key)
    store.put(key, data, content_type or "application/octet-stream")
    manifest = recording_manifest(event, key)
    save_manifest(store, manifest)
    try:
        producer = services.bus.producer()
        producer.send(services.topics.recordings, event.key, event.encode())
        producer.flush(services.settings.kafka.publish_timeout_s)
    except BusError:
        refused = "not queued: the job queue (Kafka) did not answer; send the recording again"
        save_manifest(store, manifest.model_copy(update={"status": "failed", "error": refused}))
        raise


class Accepted(BaseModel):
    """An upload taken: the call it became and its transcription job."""

    call_id: str
    job_id: str = Field(description="one job per call: a new upload of the call restarts it")
    job_url: str
    status: Literal["queued"] = "queued"
    duration: float = Field(description="seconds of audio")
    channels: int

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "call_id": "c-2026-0042",
                    "job_id": "c-2026-0042",
                    "job_url": "/v1/jobs/c-2026-0042",
                    "status": "queued",
                    "duration": 312.4,
                    "channels": 2,
                }
            ]
        }
    )


class Job(BaseModel):
    """Where a recording's transcription is."""

    job_id: str
    call_id: str
    status: Literal["queued", "running", "done", "failed"]
    progress: float = Field(ge=0, le=1, description="fraction of the call transcribed")
    error: str | None = Field(default=None, description="why it failed")
    updated_at: datetime | None = None
    transcript_url: str | None = Field(default=None, description="once done")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": "c-2026-0042",
                    "call_id": "c-2026-0042",
                    "status": "running",
                    "progress": 0.42,
                    "error": None,
                    "updated_at": "2026-12-03T10:15:02Z",
                    "transcript_url": None,
                }
            ]
        }
    )


_JOB_STATUS = {"queued": "queued", "running": "running", "transcribed": "done", "failed": "failed"}


def router(services: Services) -> APIRouter:
    """POST /v1/recordings and GET /v1/calls/{call_id}/transcript."""
    r = APIRouter()
    max_bytes = int(services.settings.max_upload_mb * 1024 * 1024)
    limits = AudioLimits(max_seconds=services.settings.max_recording_s)

    @r.post("/v1/recordings", status_code=202, responses=errors(415, 503))
    async def upload_recording(
        request: Request,
        file: Annotated[UploadFile, File(description="the recording")],
        principal: Annotated[Principal, Depends(require("pbx", "admin"))],
        call_id: Annotated[str | None, Form(max_length=128)] = None,
        channels: Annotated[str, Form(max_length=32)] = "mono",
        language: Annotated[str | None, Form(max_length=8)] = None,
        agent_id: Annotated[str | None, Form(max_length=128)] = None,
        direction: Annotated[Literal["inbound", "outbound", "internal"], Form()] = "inbound",
        caller: Annotated[str | None, Form(max_length=64)] = None,
        callee: Annotated[str | None, Form(max_length=64)] = None,
        started_at: Annotated[datetime | None, Form()] = None,
    ) -> Accepted:
        """Store a finished recording and queue it for transcription.

        The file's header is checked here (readable, 8-48 kHz, one channel per leg named,
        a sample size PBXs write, at most `max_recording_s`); it is decoded once, by the
        batch worker. A job that fails there reads `failed` with its reason.
        """
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
            raise _bad(services, 413, f"upload larger than {max_bytes} bytes", "too_large")
        data = bytearray()
        while chunk := await file.read(1 << 20):
            data.extend(chunk)
            if len(data) > max_bytes:
                raise _bad(services, 413, f"upload larger than {max_bytes} bytes", "too_large")
        cid = call_id or uuid.uuid4().hex
        try:
            check_id(cid, "call_id")
            chan = parse_channels(channels)
            if language is not None:
                check_language(language)
        except ValueError as exc:
            raise _bad(services, 422, str(exc), "bad_field") from None
        # One copy, off the event loop (a 200 MB upload would stall every WebSocket).
        blob = await run_in_threadpool(bytes, data)
        del data
        try:
            header = await run_in_threadpool(probe_audio, blob, limits)
            check_channels(chan, header.channels)
        except AudioRefused as exc:
            status = 413 if exc.kind == "length" else 422
            raise _bad(services, status, str(exc), f"audio_{exc.kind}") from None
        except AudioError as exc:
            raise _bad(services, 415, f"unreadable audio: {exc}", "bad_audio") from None
        except ChannelMismatch as exc:
            raise _bad(services, 422, str(exc), "channels") from None
        when = (started_at or datetime.now(UTC)).astimezone(UTC)
        ext = _EXT.get(header.container, "bin")
        key = call_key(principal.tenant, cid, when, f"recording.{ext}")
        event = RecordingReady(
            tenant=principal.tenant,
            call_id=cid,
            uri=services.store.uri(key),
            started_at=when,
            channels=chan,  # type: ignore[arg-type]
            language=language,
            agent_id=agent_id,
            direction=direction,
            caller=caller,
            callee=callee,
        )
        try:
            await run_in_threadpool(_store_and_queue, services, event, key, blob, file.content_type)
        except (BusError, StoreError) as exc:
            service = "job queue (Kafka)" if isinstance(exc, BusError) else "object store (S3)"
            log.warning(
                "upload refused, %s unavailable: %s", service, exc, **ctx(principal.tenant, cid)
            )
            services.metrics.inc("api_rejections_total", route="recordings", cause="unavailable")
            raise HTTPException(
                503,
                f"the {service} is unavailable; nothing was accepted, send the recording again",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            ) from None
        services.metrics.inc("recordings_received_total")
        log.info(
            "recording queued (%.1f s, %d ch)",
            header.seconds,
            header.channels,
            **ctx(principal.tenant, cid),
        )
        return Accepted(
            call_id=cid,
            job_id=cid,
            job_url=f"/v1/jobs/{cid}",
            duration=round(header.seconds, 3),
            channels=header.channels,
        )

    @r.get("/v1/jobs/{job_id}", responses=errors(404))
    def get_job(
        job_id: str,
        principal: Annotated[Principal, Depends(require("pbx", "analyst", "admin"))],
    ) -> Job:
        """A recording's transcription: queued, running (with its progress), done (with
        the transcript's URL) or failed (with the reason). The job id is the call id."""
        manifest = visible_manifest(services.store, principal, job_id)
        status = _JOB_STATUS.get(manifest.status) if manifest is not None else None
        if manifest is None or status is None:
            raise HTTPException(404, "no such job (a live call has none until it is recorded)")
        done = status == "done"
        return Job(
            job_id=job_id,
            call_id=job_id,
            status=status,  # type: ignore[arg-type]
            progress=1.0 if done else (manifest.progress or 0.0),
            error=manifest.error if status == "failed" else None,
            updated_at=manifest.updated_at,
            transcript_url=f"/v1/calls/{job_id}/transcript" if done else None,
        )

    @r.get(
        "/v1/calls/{call_id}/transcript",
        response_class=Response,
        responses=files(
            "the transcript: JSON (utterances with words), WebVTT, SubRip or text",
            "application/json",
            "text/vtt",
            "application/x-subrip",
            "text/plain",
        ),
    )
    def get_transcript(
        call_id: str,
        principal: Annotated[
            Principal, Depends(require("pbx", "analyst", "admin", "agent", links=True))
        ],
        format: Annotated[Literal["json", "vtt", "srt", "txt"], Query()] = "json",
        download: Annotated[bool, Query(description="as an attachment (a file to save)")] = False,
        link: Annotated[str | None, Query(description=LINK_HELP, max_length=200)] = None,
    ) -> Response:
        """The call's transcript: finals so far during a live call, the stored one after."""
        manifest = visible_manifest(services.store, principal, call_id)
        if manifest is None:
            raise HTTPException(404, "no such call")
        utterances: list[Utterance] | None = None
        doc: dict[str, object] | None = None
        live = live_so_far(services, principal.tenant, call_id)
        if live is not None:
            utterances = live.finals
            doc = to_document(
                principal.tenant, call_id, live.finals, {"live": True}, "live", live.presses
            )
        elif manifest.transcript_key:
            try:
                doc = json.loads(services.store.get(manifest.transcript_key))
            except ObjectNotFound:
                doc = None
            if doc is not None:
                utterances = from_document(doc)
        if doc is None or utterances is None:
            detail = manifest.error or (
                f"no transcript yet (status {manifest.status}); its job: /v1/jobs/{call_id}"
                if manifest.status in ("queued", "running")
                else f"no transcript yet (status {manifest.status})"
            )
            raise HTTPException(404, detail)
        response: Response
        if format == "vtt":
            response = PlainTextResponse(to_vtt(utterances), media_type="text/vtt")
        elif format == "srt":
            response = PlainTextResponse(to_srt(utterances), media_type="application/x-subrip")
        elif format == "txt":
            response = PlainTextResponse(to_txt(utterances))
        else:
            response = JSONResponse(doc)
        if download:
            name = f"{call_id}.{format}"
            response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    return r
