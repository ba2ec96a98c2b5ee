"""Events the identity context publishes."""

from __future__ import annotations

from medcloud.platform.events import Event


class UserCreated(Event):
    """A user account was created."""

    routing_key = "user.created"

    user_id: str
    role: str
