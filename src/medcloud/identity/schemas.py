"""Wire models of the identity context."""

from __future__ import annotations

from pydantic import BaseModel

from medcloud.platform.security import Role


class TokenRead(BaseModel):
    """An issued access token (OAuth2 token response)."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105  (the OAuth2 token type, not a secret)
    expires_in: int


class UserRead(BaseModel):
    """A user as others see them."""

    id: str
    organisation_id: str
    email: str
    role: Role
    is_active: bool
