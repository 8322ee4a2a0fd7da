"""Round trip: prompts to 8 kHz mu-law, decoded, transcribed by the real Whisper: low WER."""

import io

import av
import numpy as np

from pipeline.media.resample import resample
from pipeline.services import Services
from stt.normalise import wer
from stt.transcriber import Transcriber
from tts.formats import get_format
from tts.synth import Synthesizer

PROMPTS = [
    "Thank you for calling. Your call is important to us.",
    "For sales, press one. For support, press two.",
    "Our offices are open from nine to five, Monday to Friday.",
    "Please hold while we transfer your call.",
    "Please leave a message after the tone.",
    "All of our agents are busy at the moment.",
    "To hear these options again, press the star key.",
    "Goodbye and have a nice day.",
    "Your balance is $12.50, due on the 3rd of May.",
]
STREAMED = "Thank you for calling us, how can we help you today? Press 1 for sales."


def _decode(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data), "r") as c:
        assert c.streams.audio[0].rate == 8000
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    return resample(pcm.astype(np.float32) / 32768.0, 8000, 16000)


def test_roundtrip_wer(services: Services, whisper_model: object) -> None:
    synth = Synthesizer(services)
    fmt = get_format("ulaw8k")
    clips = [_decode(synth.render(p, fmt, 1.0)) for p in PROMPTS]
    # the streamed form too: its first sentence is cut in two pieces for a fast start
    clips.append(_decode(b"".join(synth.stream(STREAMED, fmt, 1.0))))
    transcriber = Transcriber(whisper_model)  # type: ignore[arg-type]
    hyp = " ".join(s.text for clip in clips for s in transcriber.transcribe(clip, "en")[0])
    ref = " ".join([*PROMPTS, STREAMED])
    assert wer(ref, hyp) < 0.08, hyp
