"""Expiring signed download links: an HMAC of (report, format, expiry), checked in constant time."""

from __future__ import annotations

import hashlib
import hmac

from medcloud.config import Settings
from medcloud.platform.datadir import link_secret

# Keeps a link's MAC apart from any other HMAC made with the same secret.
_CONTEXT = b"medcloud.report-link.v1."


def link_key(settings: Settings) -> bytes:
    """The key that signs download links (`MEDCLOUD_REPORTS__LINK_SECRET`): a link made by one
    replica is opened at another."""
    return link_secret(settings.reports.link_secret, settings.var_dir, "report-links.key")


def sign(key: bytes, report_id: str, file_format: str, expires: int) -> str:
    """Return the signature of a link to one file of a report, valid until `expires`."""
    message = _CONTEXT + f"{report_id}.{file_format}.{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def verify(
    key: bytes, report_id: str, file_format: str, expires: int, signature: str, *, now: float
) -> bool:
    """Tell whether a link is authentic and unexpired."""
    if now >= expires:
        return False
    return hmac.compare_digest(sign(key, report_id, file_format, expires), signature)
