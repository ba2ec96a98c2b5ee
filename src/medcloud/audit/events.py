"""Events of the audit context.

It defines none of its own: what it records arrives as the platform's `AuditRecorded`, and the
one thing it publishes, the record of an export of the log, is an `AuditRecorded` too.
"""

from __future__ import annotations

from medcloud.platform.audit import AuditRecorded

__all__ = ["AuditRecorded"]
