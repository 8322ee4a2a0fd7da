"""Speech to text: audio loading, VAD and endpointing, Whisper batch and streaming, normalising."""
