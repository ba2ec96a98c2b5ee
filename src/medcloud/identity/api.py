"""HTTP routes of the identity context."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form

from medcloud.identity import service
from medcloud.identity.schemas import TokenRead, UserRead
from medcloud.platform.http import Authorize, RuntimeDep, UowDep
from medcloud.platform.policy import Action
from medcloud.platform.security import UserPrincipal

router = APIRouter(prefix="/api/v1", tags=["identity"])


@router.post("/auth/token", response_model=TokenRead)
async def issue_token(
    uow: UowDep,
    runtime: RuntimeDep,
    username: Annotated[str, Form(min_length=1, max_length=320)],
    password: Annotated[str, Form(min_length=1, max_length=1024)],
) -> TokenRead:
    """Exchange an email and password for an access token (OAuth2 password flow)."""
    return await service.issue_token(
        uow=uow, tokens=runtime.tokens, email=username, password=password
    )


@router.get("/users/me", response_model=UserRead)
async def read_me(
    uow: UowDep, principal: Annotated[UserPrincipal, Authorize(Action.PROFILE_READ)]
) -> UserRead:
    """Return the signed-in user."""
    return await service.get_user(uow=uow, principal=principal, user_id=principal.user_id)
