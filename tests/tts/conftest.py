"""Fixtures of the TTS and IVR tests."""

from typing import Any

import pytest


@pytest.fixture
def menu_doc() -> dict[str, Any]:
    """A valid menu: hours branch, then a main menu with digits and keywords."""
    return {
        "start": "entry",
        "nodes": {
            "entry": {
                "prompt": "Welcome to Acme.",
                "action": {
                    "kind": "hours",
                    "timezone": "Europe/Paris",
                    "open": "main",
                    "closed": "closed",
                    "schedule": {
                        d: ["00:00-24:00"]
                        for d in ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                    },
                },
            },
            "main": {
                "prompt": "For sales press 1. For technical support press 2.",
                "retries": 1,
                "options": [
                    {
                        "digit": "1",
                        "keywords": ["sales", "buy"],
                        "action": {"kind": "transfer", "queue": "sales"},
                    },
                    {
                        "digit": "2",
                        "keywords": ["technical support", "support", "hélp"],
                        "action": {"kind": "goto", "node": "support"},
                    },
                ],
            },
            "support": {
                "prompt": "Press 1 for billing, or say agent.",
                "options": [
                    {"digit": "1", "action": {"kind": "transfer", "extension": "204"}},
                    {"keywords": ["agent"], "action": {"kind": "transfer", "queue": "tech"}},
                    {"digit": "9", "action": {"kind": "voicemail", "mailbox": "tech"}},
                ],
            },
            "closed": {"prompt": "We are closed.", "action": {"kind": "hangup"}},
        },
    }
