"""Text to speech: Piper synthesis, telephony formats, the prompt cache, IVR menus."""
