"""Media at the edge: RTP, codecs, jitter buffer, resampling."""
