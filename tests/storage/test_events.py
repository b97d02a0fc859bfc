"""An event's details are stored as the JSON encoder writes them, whatever path writes them."""

from __future__ import annotations

import json

import pytest

from ergon_actors.storage.events import dumps


@pytest.mark.parametrize("details", [
    {"position": 3, "name": "charge", "attempt": 1, "tries": 2},
    {"position": 0, "name": "wört \"q\"\n\u2028", "attempt": 12, "tries": 1},
    {"position": 1, "name": "s", "attempt": 1, "tries": True},
    {"name": "s", "position": 1, "attempt": 1, "tries": 1},
    {"position": 1, "name": None, "attempt": 1, "tries": 1},
    {"position": 1, "name": "s", "attempt": 1, "error": "ValueError"},
    {"worker": "w1", "epoch": 2}, {"worker": None, "epoch": 2, "taken": True},
    {"at": 1.5, "name": "t"}, {"at": float("inf")}, {"n": 2 ** 70, "m": -3}, {},
    {"nested": {"a": [1, "b"]}}, {"ké": "v"},
])
def test_details_are_written_as_compact_ascii_json(details):
    assert dumps(details) == json.dumps(details, separators=(",", ":"))
