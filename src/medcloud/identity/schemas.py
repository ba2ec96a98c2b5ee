"""Wire models of the identity context."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StrictBool

from medcloud.platform.security import Role
from medcloud.platform.types import TRIM, BirthDate, Id, Name, line, trimmed

Email = Annotated[EmailStr, Field(max_length=254)]


class Strict(BaseModel):
    """Requests refuse unknown fields, so a client cannot slip in `role` or `organisation_id`."""

    model_config = ConfigDict(extra="forbid")


class TokenRead(BaseModel):
    """An issued access token and the refresh token that renews it (OAuth2 token response)."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105  (the OAuth2 token type, not a secret)
    expires_in: int
    refresh_token: str


class RefreshRequest(Strict):
    """A refresh token to exchange or revoke."""

    refresh_token: str = Field(min_length=10, max_length=200)


class MfaEnrolment(BaseModel):
    """A new TOTP secret; confirm it by signing in with a code it generates."""

    secret: str
    otpauth_uri: str


class UserRead(BaseModel):
    """A user as others see them."""

    id: str
    organisation_id: str
    email: str
    role: Role
    is_active: bool
    mfa_enabled: bool
    ward_ids: list[str]
    created_at: dt.datetime


class UserInvite(Strict):
    """What an admin sends to invite a user."""

    email: Email
    role: Role
    ward_ids: list[Id] = Field(default_factory=list, max_length=50)


class UserInvited(UserRead):
    """An invited user, with the one-time invitation token to deliver to them."""

    invitation_token: str
    invitation_expires_at: dt.datetime


class UserUpdate(Strict):
    """What an admin may change about a user."""

    role: Role | None = None
    ward_ids: list[Id] | None = Field(default=None, max_length=50)
    is_active: StrictBool | None = None


class UserPage(BaseModel):
    """Users of the organisation, oldest first."""

    items: list[UserRead]
    next_cursor: str | None = None
    """Pass as `cursor` for the next page; absent on the last."""


class InvitationAccept(Strict):
    """An invited user's chosen password."""

    token: str = Field(min_length=10, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


class WardCreate(Strict):
    """A new care team."""

    name: Name


class WardRead(BaseModel):
    """A care team."""

    id: str
    name: str
    created_at: dt.datetime


class WardPage(BaseModel):
    """The organisation's care teams."""

    items: list[WardRead]


class PatientCreate(Strict):
    """A patient to register (identifier as in FHIR: system + value)."""

    identifier_system: Annotated[str, line(1, 200)]
    identifier_value: Annotated[str, line(1, 100)]
    family_name: Name
    given_name: Name
    birth_date: BirthDate
    ward_id: Id | None = None


class PatientUpdate(Strict):
    """A patient's move to another care team (or none)."""

    ward_id: Id | None


class PatientRead(BaseModel):
    """A patient as their care team sees them."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    identifier_system: str
    identifier_value: str
    family_name: str
    given_name: str
    birth_date: dt.date
    ward_id: str | None
    created_at: dt.datetime


class PatientPage(BaseModel):
    """Patients, newest first."""

    items: list[PatientRead]
    next_cursor: str | None


class BreakGlassRequest(Strict):
    """Why a clinician needs a patient outside their care teams."""

    reason: Annotated[str, trimmed(10, 500), TRIM]


class BreakGlassRead(BaseModel):
    """Emergency access granted until `expires_at`."""

    id: str
    patient_id: str
    granted_at: dt.datetime
    expires_at: dt.datetime
