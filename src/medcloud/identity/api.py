"""HTTP routes of the identity context."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, status

from medcloud.identity import patients, service, sessions, users
from medcloud.identity.schemas import (
    BreakGlassRead,
    BreakGlassRequest,
    InvitationAccept,
    MfaEnrolment,
    PatientCreate,
    PatientPage,
    PatientRead,
    PatientUpdate,
    RefreshRequest,
    TokenRead,
    UserInvite,
    UserInvited,
    UserPage,
    UserRead,
    UserUpdate,
    WardCreate,
    WardPage,
    WardRead,
)
from medcloud.platform.http import Authorize, ListDep, RuntimeDep, UowDep
from medcloud.platform.policy import Action
from medcloud.platform.security import UserPrincipal

router = APIRouter(tags=["identity"])
Email = Annotated[str, Form(min_length=1, max_length=320)]
Password = Annotated[str, Form(min_length=1, max_length=1024)]


def _source(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.post("/api/v1/auth/token", response_model=TokenRead)
async def sign_in(
    request: Request,
    uow: UowDep,
    runtime: RuntimeDep,
    username: Email,
    password: Password,
    totp: Annotated[str | None, Form(max_length=10)] = None,
) -> TokenRead:
    """Sign in (OAuth2 password flow): an access token and a rotating refresh token."""
    return await sessions.sign_in(
        uow=uow,
        tokens=runtime.tokens,
        cache=runtime.cache,
        settings=runtime.settings,
        email=username,
        password=password,
        totp=totp,
        source=_source(request),
    )


@router.post("/api/v1/auth/refresh", response_model=TokenRead)
async def refresh(body: RefreshRequest, uow: UowDep, runtime: RuntimeDep) -> TokenRead:
    """Exchange a refresh token for new tokens; replaying a spent one ends the session."""
    return await sessions.refresh_session(
        uow=uow,
        tokens=runtime.tokens,
        settings=runtime.settings,
        refresh_token=body.refresh_token,
    )


@router.post("/api/v1/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def sign_out(body: RefreshRequest, uow: UowDep) -> None:
    """End the session the refresh token belongs to."""
    await sessions.sign_out(uow=uow, refresh_token=body.refresh_token)


@router.post("/api/v1/auth/mfa/enrol", response_model=MfaEnrolment)
async def enrol_mfa(
    request: Request, uow: UowDep, runtime: RuntimeDep, username: Email, password: Password
) -> MfaEnrolment:
    """Start TOTP enrolment (proven by password); the next sign-in with a code completes it."""
    return await sessions.enrol_mfa(
        uow=uow,
        cache=runtime.cache,
        settings=runtime.settings,
        email=username,
        password=password,
        source=_source(request),
    )


@router.post("/api/v1/auth/invitations/accept", status_code=status.HTTP_204_NO_CONTENT)
async def accept_invitation(body: InvitationAccept, uow: UowDep, runtime: RuntimeDep) -> None:
    """Choose a password through an invitation."""
    await users.accept_invitation(
        uow=uow, settings=runtime.settings, token=body.token, password=body.password
    )


@router.get("/.well-known/jwks.json")
async def jwks(runtime: RuntimeDep) -> dict[str, Any]:
    """Publish the keys that verify access tokens, for services that hold no signing key."""
    return runtime.tokens.keys.jwks()


@router.get("/api/v1/users/me", response_model=UserRead)
async def read_me(
    uow: UowDep, principal: Annotated[UserPrincipal, Authorize(Action.PROFILE_READ)]
) -> UserRead:
    """Return the signed-in user."""
    return await users.get_user(uow=uow, principal=principal, user_id=principal.user_id)


@router.post("/api/v1/users", response_model=UserInvited, status_code=status.HTTP_201_CREATED)
async def invite_user(
    cmd: UserInvite,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.USER_MANAGE)],
) -> UserInvited:
    """Invite a user; deliver the returned invitation token to them."""
    return await users.invite_user(uow=uow, principal=principal, settings=runtime.settings, cmd=cmd)


@router.get("/api/v1/users", response_model=UserPage)
async def list_users(
    session: ListDep,
    principal: Annotated[UserPrincipal, Authorize(Action.USER_MANAGE)],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> UserPage:
    """List the organisation's users, oldest first, a page at a time."""
    return await users.list_users(session=session, principal=principal, limit=limit, cursor=cursor)


@router.get("/api/v1/users/{user_id}", response_model=UserRead)
async def read_user(
    user_id: str,
    uow: UowDep,
    principal: Annotated[UserPrincipal, Authorize(Action.USER_MANAGE)],
) -> UserRead:
    """Return one user."""
    return await users.get_user(uow=uow, principal=principal, user_id=user_id)


@router.patch("/api/v1/users/{user_id}", response_model=UserRead)
async def update_user(
    user_id: str,
    cmd: UserUpdate,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.USER_MANAGE)],
) -> UserRead:
    """Change a user's role, wards, or whether they may sign in (a new role or disabling
    refuses the user's access tokens at once)."""
    return await users.update_user(
        uow=uow,
        cache=runtime.cache,
        settings=runtime.settings,
        principal=principal,
        user_id=user_id,
        cmd=cmd,
    )


@router.post("/api/v1/users/{user_id}/unlock", response_model=UserRead)
async def unlock_user(
    user_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.USER_MANAGE)],
) -> UserRead:
    """Lift the waits failed sign-ins put on a user, from every address (audited)."""
    return await users.unlock_user(
        uow=uow, cache=runtime.cache, principal=principal, user_id=user_id
    )


@router.post("/api/v1/wards", response_model=WardRead, status_code=status.HTTP_201_CREATED)
async def create_ward(
    cmd: WardCreate,
    uow: UowDep,
    principal: Annotated[UserPrincipal, Authorize(Action.WARD_MANAGE)],
) -> WardRead:
    """Create a care team."""
    return await service.create_ward(uow=uow, principal=principal, cmd=cmd)


@router.get("/api/v1/wards", response_model=WardPage)
async def list_wards(
    session: ListDep, principal: Annotated[UserPrincipal, Authorize(Action.WARD_READ)]
) -> WardPage:
    """List the organisation's care teams."""
    return await service.list_wards(session=session, principal=principal)


@router.post("/api/v1/patients", response_model=PatientRead, status_code=status.HTTP_201_CREATED)
async def create_patient(
    cmd: PatientCreate,
    uow: UowDep,
    principal: Annotated[UserPrincipal, Authorize(Action.PATIENT_WRITE)],
) -> PatientRead:
    """Register a patient."""
    return await patients.create_patient(uow=uow, principal=principal, cmd=cmd)


@router.get("/api/v1/patients", response_model=PatientPage)
async def list_patients(
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.PATIENT_READ)],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> PatientPage:
    """List the patients in the user's care teams (and break-glass grants)."""
    return await patients.list_patients(
        uow=uow, care=runtime.care, principal=principal, limit=limit, cursor=cursor
    )


@router.get("/api/v1/patients/{patient_id}", response_model=PatientRead)
async def read_patient(
    patient_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.PATIENT_READ)],
) -> PatientRead:
    """Return one patient."""
    return await patients.get_patient(
        uow=uow, care=runtime.care, principal=principal, patient_id=patient_id
    )


@router.patch("/api/v1/patients/{patient_id}", response_model=PatientRead)
async def update_patient(
    patient_id: str,
    cmd: PatientUpdate,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.PATIENT_WRITE)],
) -> PatientRead:
    """Move a patient to another care team."""
    return await patients.update_patient(
        uow=uow, care=runtime.care, principal=principal, patient_id=patient_id, cmd=cmd
    )


@router.post(
    "/api/v1/patients/{patient_id}/break-glass",
    response_model=BreakGlassRead,
    status_code=status.HTTP_201_CREATED,
)
async def break_glass(
    patient_id: str,
    body: BreakGlassRequest,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.BREAK_GLASS)],
) -> BreakGlassRead:
    """Open time-limited emergency access to a patient outside one's care teams (audited)."""
    return await patients.break_glass(
        uow=uow,
        principal=principal,
        settings=runtime.settings,
        patient_id=patient_id,
        reason=body.reason,
    )
