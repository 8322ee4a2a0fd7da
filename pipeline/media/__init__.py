"""Media at the edge: RTP, codecs, jitter buffer, resampling, audio files."""

# The one rate of audio inside callpipe: what the legs are decoded to and Whisper and the
# VADs hear.
SAMPLE_RATE = 16000
