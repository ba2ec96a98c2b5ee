"""Events the identity context publishes."""

from __future__ import annotations

from medcloud.platform.events import Event


class OrganisationCreated(Event):
    """An organisation joined medcloud."""

    routing_key = "organisation.created"

    bootstrap: bool
    """It is the first one, created from the deployment's settings."""


class UserCreated(Event):
    """A user account was created."""

    routing_key = "user.created"

    user_id: str
    role: str
