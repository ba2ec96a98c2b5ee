from __future__ import annotations

import pytest

from medcloud.platform.bus import topic_matches


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("device.data.collected", "device.data.collected", True),
        ("device.*.collected", "device.data.collected", True),
        ("device.*", "device.data.collected", False),
        ("device.#", "device.data.collected", True),
        ("#", "alert.raised", True),
        ("#.raised", "alert.raised", True),
        ("alert.#.raised", "alert.raised", True),
        ("alert.raised", "alert.resolved", False),
        ("*.raised", "alert.raised", True),
        ("device.data", "device.data.collected", False),
    ],
)
def test_topic_patterns_match_as_amqp_does(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches
