"""POST /v1/tts: text to audio in a telephony format, streamed, through the prompt cache."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from pipeline.api.errors import files
from pipeline.auth import Principal, require
from pipeline.services import Services
from tts.cache import PromptCache
from tts.formats import FormatError, get_format
from tts.text import TextError


class TtsRequest(BaseModel):
    """Body of POST /v1/tts."""

    text: str = Field(max_length=100_000)  # the route holds it to tts.max_text_chars
    format: str = Field(default="ulaw8k", max_length=32)
    rate: float | None = Field(default=None, gt=0.25, le=4.0)


def router(services: Services) -> APIRouter:
    """Routes of the TTS API."""
    r = APIRouter()
    cache: PromptCache = services.component("tts.cache", lambda: PromptCache(services))

    @r.post(
        "/v1/tts",
        response_model=None,
        responses=files(
            "the speech, in the format asked for", "audio/wav", "audio/basic", "audio/x-alaw-basic"
        ),
    )
    def tts(
        body: TtsRequest, _: Principal = Depends(require("pbx", "admin"))
    ) -> Response | StreamingResponse:
        """Speak `text`: a cached prompt at once, else streamed sentence by sentence."""
        try:
            fmt = get_format(body.format)
        except FormatError as exc:
            services.metrics.inc("tts_rejected_total", reason="format")
            raise HTTPException(422, str(exc)) from exc
        rate = body.rate or services.settings.tts.default_rate
        try:
            # Preparing the text for the key checks it: bad text fails before any audio.
            key = cache.key(body.text, fmt, rate)
        except TextError as exc:
            too_long = "limit" in str(exc)
            services.metrics.inc("tts_rejected_total", reason="length" if too_long else "text")
            raise HTTPException(413 if too_long else 422, str(exc)) from exc
        data = cache.lookup(key)
        if data is not None:
            return Response(data, media_type=fmt.media_type)
        return StreamingResponse(
            cache.synthesise(key, body.text, fmt, rate), media_type=fmt.media_type
        )

    return r
