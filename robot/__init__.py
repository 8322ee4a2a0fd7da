"""Voicebot scenarios, the dialog engine and the outbound compliance guard."""
