"""Where a webhook may point: public addresses over TLS, and what each setting opens."""

from __future__ import annotations

import pytest

from medcloud.notifications.rosters import _webhook_target_error


@pytest.mark.parametrize(
    ("url", "loopback", "private", "refused"),
    [
        ("https://93.184.215.14/hook", False, False, False),
        ("http://93.184.215.14/hook", False, False, True),  # leaves TLS
        ("https://10.1.2.3/hook", False, False, True),
        ("https://10.1.2.3/hook", False, True, False),  # a receiver on the hospital network
        ("https://[::ffff:10.1.2.3]/hook", False, False, True),
        ("https://[::ffff:169.254.169.254]/", False, True, True),  # never the metadata service
        ("http://127.0.0.1:9000/hook", True, False, False),  # development receiver
        ("http://[::ffff:127.0.0.1]:9000/hook", False, True, True),
        ("http://localhost:9000/hook", True, False, False),
        ("https://localhost./", False, False, True),
        ("https://ehr/hook", False, True, True),  # a bare name only a local resolver knows
        ("https://metadata.google.internal/", False, True, True),
    ],
)
async def test_webhook_targets(url: str, loopback: bool, private: bool, refused: bool) -> None:
    error = await _webhook_target_error(url, allow_loopback=loopback, allow_private=private)
    assert (error is not None) == refused, error
