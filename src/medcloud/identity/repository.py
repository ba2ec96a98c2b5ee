"""Queries on the identity context's tables. Repositories never commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import and_, bindparam, case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.identity.models import (
    BreakGlassGrant,
    Invitation,
    Organisation,
    Patient,
    RefreshToken,
    UserAccount,
    Ward,
    WardMember,
)
from medcloud.platform.directory import PatientQuery
from medcloud.platform.paging import after, before


async def get_user_by_email(session: AsyncSession, email: str) -> UserAccount | None:
    """Return the user with this email (stored lower-case), or None."""
    return await session.scalar(select(UserAccount).where(UserAccount.email == email.lower()))


async def get_user(session: AsyncSession, user_id: str) -> UserAccount | None:
    """Return the user, or None."""
    return await session.get(UserAccount, user_id)


async def get_organisation(session: AsyncSession, organisation_id: str) -> Organisation | None:
    """Return the organisation, or None."""
    return await session.get(Organisation, organisation_id)


async def count_users(session: AsyncSession) -> int:
    """Count every user."""
    return int(await session.scalar(select(func.count()).select_from(UserAccount)) or 0)


async def first_organisation(session: AsyncSession) -> Organisation | None:
    """Return the oldest organisation, or None."""
    return await session.scalar(select(Organisation).order_by(Organisation.created_at).limit(1))


async def reserve_login_attempt(
    session: AsyncSession,
    email: str,
    now: dt.datetime,
    *,
    waits: bool,
    forget_before: dt.datetime,
) -> tuple[str, int] | None:
    """Count one more failed sign-in against an account, atomically, before the password is
    checked, so parallel guesses cannot all slip through while the first are still hashing.

    Returns (user id, failures so far, this one included), or None when there is no such
    account or, with `waits`, its account-wide wait (`locked_until`) has not passed; such an
    attempt is not counted, and a counted one dates itself there (a wait of none, which
    `lock_user` lengthens past the ceiling). A count whose last wait ended before
    `forget_before` starts afresh.
    """
    stale = and_(UserAccount.locked_until.is_not(None), UserAccount.locked_until < forget_before)
    conditions = [UserAccount.email == email.lower()]
    if waits:
        conditions.append(or_(UserAccount.locked_until.is_(None), UserAccount.locked_until <= now))
    # Without `waits` the address is exempt, and a wait others are in must not be shortened.
    dated = now if waits else case((stale, None), else_=UserAccount.locked_until)
    result = await session.execute(
        update(UserAccount)
        .where(*conditions)
        .values(
            failed_logins=case((stale, 1), else_=UserAccount.failed_logins + 1),
            locked_until=dated,
        )
        .returning(UserAccount.id, UserAccount.failed_logins)
    )
    row = result.first()
    return None if row is None else (row[0], row[1])


async def lock_user(session: AsyncSession, user_id: str, until: dt.datetime) -> None:
    """Make addresses the account has not signed in from lately wait until `until` (which may
    be now: it also dates the last failure, from which the count is forgotten)."""
    await session.execute(
        update(UserAccount).where(UserAccount.id == user_id).values(locked_until=until)
    )


async def ward_ids_of(session: AsyncSession, user_ids: Sequence[str]) -> dict[str, list[str]]:
    """Return each user's ward ids."""
    rows = await session.execute(
        select(WardMember.user_id, WardMember.ward_id).where(WardMember.user_id.in_(user_ids))
    )
    wards: dict[str, list[str]] = {user_id: [] for user_id in user_ids}
    for user_id, ward_id in rows.all():
        wards[user_id].append(ward_id)
    return wards


async def set_wards(session: AsyncSession, user_id: str, ward_ids: Sequence[str]) -> None:
    """Replace the user's ward memberships."""
    await session.execute(delete(WardMember).where(WardMember.user_id == user_id))
    for ward_id in dict.fromkeys(ward_ids):
        session.add(WardMember(user_id=user_id, ward_id=ward_id))


async def wards_in_organisation(
    session: AsyncSession, organisation_id: str, ward_ids: Sequence[str]
) -> set[str]:
    """Return which of `ward_ids` belong to the organisation."""
    if not ward_ids:
        return set()
    rows = await session.scalars(
        select(Ward.id).where(Ward.organisation_id == organisation_id, Ward.id.in_(ward_ids))
    )
    return set(rows.all())


async def list_users(
    session: AsyncSession,
    organisation_id: str,
    *,
    limit: int,
    cursor: tuple[dt.datetime, str] | None,
) -> Sequence[UserAccount]:
    """Return up to `limit` of the organisation's users, oldest first, from `cursor` on."""
    query = (
        select(UserAccount)
        .where(UserAccount.organisation_id == organisation_id)
        .order_by(UserAccount.created_at, UserAccount.id)
        .limit(limit)
    )
    if cursor is not None:
        query = query.where(after(UserAccount.created_at, UserAccount.id, cursor))
    return (await session.scalars(query)).all()


async def ward_named(session: AsyncSession, organisation_id: str, name: str) -> Ward | None:
    """Return the organisation's ward of this name (ignoring case), or None."""
    return await session.scalar(
        select(Ward)
        .where(Ward.organisation_id == organisation_id, func.lower(Ward.name) == name.lower())
        .order_by(Ward.created_at, Ward.id)
        .limit(1)
    )


async def list_wards(session: AsyncSession, organisation_id: str) -> Sequence[Ward]:
    """Return the organisation's wards by name."""
    query = select(Ward).where(Ward.organisation_id == organisation_id).order_by(Ward.name)
    return (await session.scalars(query)).all()


async def get_refresh_token(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    """Return the refresh token with this hash, or None."""
    return await session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))


async def spend_refresh_token(session: AsyncSession, token_id: str, now: dt.datetime) -> bool:
    """Mark a refresh token spent; False when another request spent it first."""
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token_id, RefreshToken.spent_at.is_(None))
        .values(spent_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def family_started_at(session: AsyncSession, family_id: str) -> dt.datetime | None:
    """Return when a refresh-token family (a session) began."""
    return await session.scalar(
        select(func.min(RefreshToken.issued_at)).where(RefreshToken.family_id == family_id)
    )


async def revoke_family(session: AsyncSession, family_id: str, now: dt.datetime) -> None:
    """Revoke every token of a session."""
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_user_sessions(session: AsyncSession, user_id: str, now: dt.datetime) -> None:
    """Revoke every session of a user."""
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def get_invitation(session: AsyncSession, token_hash: str) -> Invitation | None:
    """Return the invitation with this token hash, or None."""
    return await session.scalar(select(Invitation).where(Invitation.token_hash == token_hash))


async def get_patient(session: AsyncSession, patient_id: str) -> Patient | None:
    """Return the patient, or None."""
    return await session.get(Patient, patient_id)


# Built once: every read of a patient's data asks it first. Three columns, not the whole
# row: the look-up shows neither the patient's names nor identifiers.
_PATIENT_REFERENCE = select(Patient.id, Patient.organisation_id, Patient.ward_id).where(
    Patient.id == bindparam("patient_id")
)


async def patient_reference(
    session: AsyncSession, patient_id: str
) -> tuple[str, str, str | None] | None:
    """Return (id, organisation, ward) of the patient, or None."""
    row = (await session.execute(_PATIENT_REFERENCE, {"patient_id": patient_id})).first()
    return None if row is None else (row[0], row[1], row[2])


async def patient_wards(session: AsyncSession, patient_ids: Sequence[str]) -> dict[str, str | None]:
    """Return the ward of each of these patients that exists."""
    rows = await session.execute(
        select(Patient.id, Patient.ward_id).where(Patient.id.in_(list(patient_ids)))
    )
    return dict(rows.all())


async def patient_by_identifier(
    session: AsyncSession, organisation_id: str, system: str, value: str
) -> Patient | None:
    """Return the organisation's patient with this identifier, or None."""
    return await session.scalar(
        select(Patient).where(
            Patient.organisation_id == organisation_id,
            Patient.identifier_system == system,
            Patient.identifier_value == value,
        )
    )


async def patient_identifier_taken(
    session: AsyncSession, organisation_id: str, system: str, value: str
) -> bool:
    """Tell whether the organisation already has a patient with this identifier."""
    return await patient_by_identifier(session, organisation_id, system, value) is not None


async def page_patients(
    session: AsyncSession,
    organisation_id: str,
    *,
    only: frozenset[str] | None,
    limit: int,
    after: tuple[dt.datetime, str] | None,
) -> Sequence[Patient]:
    """Return the organisation's patients (only those in `only`, if given), newest first."""
    query = select(Patient).where(Patient.organisation_id == organisation_id)
    if only is not None:
        query = query.where(Patient.id.in_(only))
    if after is not None:
        query = query.where(before(Patient.created_at, Patient.id, after))
    query = query.order_by(Patient.created_at.desc(), Patient.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def patients_by_ids(session: AsyncSession, patient_ids: Sequence[str]) -> Sequence[Patient]:
    """Return the patients of these ids that exist."""
    if not patient_ids:
        return []
    return (await session.scalars(select(Patient).where(Patient.id.in_(list(patient_ids))))).all()


async def search_patients(
    session: AsyncSession,
    organisation_id: str,
    query: PatientQuery,
    *,
    limit: int,
    after: tuple[dt.datetime, str] | None,
) -> Sequence[Patient]:
    """Return the organisation's patients matching `query`, newest first, after a cursor.

    An identifier search is one probe of the (organisation, system, value) key; the rest walk
    the (organisation, created_at) index newest first and stop at `limit`.
    """
    statement = select(Patient).where(Patient.organisation_id == organisation_id)
    for column, value in (
        (Patient.identifier_system, query.identifier_system),
        (Patient.identifier_value, query.identifier_value),
        (Patient.ward_id, query.ward_id),
    ):
        if value is not None:
            statement = statement.where(column == value)
    for ids in (query.ids, query.patients):
        if ids is not None:
            statement = statement.where(Patient.id.in_(ids))
    if query.name:
        # LIKE's wildcards in a name are meant literally.
        escaped = query.name.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        prefix = escaped + "%"
        statement = statement.where(
            or_(
                func.lower(Patient.family_name).like(prefix, escape="\\"),
                func.lower(Patient.given_name).like(prefix, escape="\\"),
            )
        )
    if after is not None:
        statement = statement.where(before(Patient.created_at, Patient.id, after))
    statement = statement.order_by(Patient.created_at.desc(), Patient.id.desc()).limit(limit)
    return (await session.scalars(statement)).all()


async def care_scope_patient_ids(
    session: AsyncSession, user_id: str, organisation_id: str, now: dt.datetime
) -> frozenset[str]:
    """Return the patients in the user's wards plus those under an unexpired break-glass grant."""
    in_wards = select(Patient.id).where(
        Patient.organisation_id == organisation_id,
        Patient.ward_id.in_(select(WardMember.ward_id).where(WardMember.user_id == user_id)),
    )
    granted = select(BreakGlassGrant.patient_id).where(
        BreakGlassGrant.user_id == user_id,
        BreakGlassGrant.organisation_id == organisation_id,
        BreakGlassGrant.expires_at > now,
    )
    rows = await session.scalars(in_wards.union(granted))
    return frozenset(rows.all())


async def ward_member_ids(session: AsyncSession, organisation_id: str, ward_id: str) -> list[str]:
    """Return the active users who are members of the ward."""
    rows = await session.scalars(
        select(UserAccount.id)
        .join(WardMember, WardMember.user_id == UserAccount.id)
        .join(Ward, Ward.id == WardMember.ward_id)
        .where(
            Ward.id == ward_id,
            Ward.organisation_id == organisation_id,
            UserAccount.is_active.is_(True),
        )
        .order_by(UserAccount.id)
    )
    return list(rows.all())
