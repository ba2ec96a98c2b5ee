"""Fakes for the identity context's use cases: a unit of work, its session and the repository
over a list of rows, so the use cases run with no database.

The fake repository keeps the real one's contract (same names, same arguments, same answers);
the unit of work keeps its transaction: what a use case changes without reaching `commit()` is
undone when it leaves the block, as a rollback would.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.identity import repository
from medcloud.identity.directory import SqlCareDirectory
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
from medcloud.platform.audit import AuditRecorded, Outcome
from medcloud.platform.clock import Clock, FrozenClock
from medcloud.platform.db import Base
from medcloud.platform.directory import PatientQuery
from medcloud.platform.events import Event
from medcloud.platform.security import (
    Role,
    TokenKeys,
    TokenService,
    UserPrincipal,
    hash_password,
)
from medcloud.platform.uow import UnitOfWork, UnitOfWorkFactory

NOW = dt.datetime(2026, 12, 5, 9, 0, tzinfo=dt.UTC)
PASSWORD = "a-long-enough-passphrase-42"

Row = TypeVar("Row", bound=Base)
E = TypeVar("E", bound=Event)


class InMemoryRepository:
    """The identity repository over a list of rows: same functions, same contract, no SQL.

    Writes land at once, as they would inside a transaction; `begin`, `keep` and `rollback`
    give the fake unit of work its all-or-nothing.
    """

    def __init__(self) -> None:
        self.rows: list[Base] = []
        self.reservations = 0
        self._baseline: list[tuple[Base, dict[str, Any]]] = []

    # --- the transaction -----------------------------------------------------------------------

    def put(self, *rows: Base) -> None:
        """Store rows, as if committed long ago."""
        self.rows.extend(rows)

    def all(self, model: type[Row]) -> list[Row]:
        """Return the stored rows of one table."""
        return [row for row in self.rows if isinstance(row, model)]

    def begin(self) -> None:
        """Remember every row as it is now, to return to on rollback."""
        self._baseline = [(row, _columns(row)) for row in self.rows]

    def keep(self) -> None:
        """Make what was written since `begin` stay (commit)."""
        self.begin()

    def rollback(self) -> None:
        """Undo everything written since `begin`."""
        self.rows = [row for row, _ in self._baseline]
        for row, values in self._baseline:
            for key, value in values.items():
                setattr(row, key, value)

    # --- the repository's functions --------------------------------------------------------------

    async def get_user_by_email(self, _session: object, email: str) -> UserAccount | None:
        return next((u for u in self.all(UserAccount) if u.email == email.lower()), None)

    async def get_user(self, _session: object, user_id: str) -> UserAccount | None:
        return self._by_id(UserAccount, user_id)

    async def get_organisation(self, _session: object, organisation_id: str) -> Organisation | None:
        return self._by_id(Organisation, organisation_id)

    async def count_users(self, _session: object) -> int:
        return len(self.all(UserAccount))

    async def first_organisation(self, _session: object) -> Organisation | None:
        return min(self.all(Organisation), key=lambda o: o.created_at, default=None)

    async def reserve_login_attempt(
        self,
        _session: object,
        email: str,
        now: dt.datetime,
        *,
        waits: bool,
        forget_before: dt.datetime,
    ) -> tuple[str, int] | None:
        self.reservations += 1
        user = await self.get_user_by_email(_session, email)
        if user is None or (waits and user.locked_until is not None and user.locked_until > now):
            return None
        if user.locked_until is not None and user.locked_until < forget_before:
            user.failed_logins, user.locked_until = 1, None
        else:
            user.failed_logins += 1
        if waits:
            user.locked_until = now
        return user.id, user.failed_logins

    async def lock_user(self, _session: object, user_id: str, until: dt.datetime) -> None:
        for user in self.all(UserAccount):
            if user.id == user_id:
                user.locked_until = until

    async def ward_ids_of(self, _session: object, user_ids: Sequence[str]) -> dict[str, list[str]]:
        wards: dict[str, list[str]] = {user_id: [] for user_id in user_ids}
        for member in self.all(WardMember):
            if member.user_id in wards:
                wards[member.user_id].append(member.ward_id)
        return wards

    async def set_wards(self, _session: object, user_id: str, ward_ids: Sequence[str]) -> None:
        self.rows = [
            r for r in self.rows if not (isinstance(r, WardMember) and r.user_id == user_id)
        ]
        self.put(*(WardMember(user_id=user_id, ward_id=w) for w in dict.fromkeys(ward_ids)))

    async def wards_in_organisation(
        self, _session: object, organisation_id: str, ward_ids: Sequence[str]
    ) -> set[str]:
        return {
            w.id
            for w in self.all(Ward)
            if w.organisation_id == organisation_id and w.id in ward_ids
        }

    async def list_users(
        self,
        _session: object,
        organisation_id: str,
        *,
        limit: int,
        cursor: tuple[dt.datetime, str] | None,
    ) -> list[UserAccount]:
        users = [u for u in self.all(UserAccount) if u.organisation_id == organisation_id]
        ordered = sorted(users, key=lambda u: (u.created_at, u.id))
        return [u for u in ordered if cursor is None or (u.created_at, u.id) > cursor][:limit]

    async def ward_named(self, _session: object, organisation_id: str, name: str) -> Ward | None:
        wards = await self.list_wards(_session, organisation_id)
        return next((w for w in wards if w.name.lower() == name.lower()), None)

    async def list_wards(self, _session: object, organisation_id: str) -> list[Ward]:
        wards = [w for w in self.all(Ward) if w.organisation_id == organisation_id]
        return sorted(wards, key=lambda w: w.name)

    async def get_refresh_token(self, _session: object, token_hash: str) -> RefreshToken | None:
        return next((t for t in self.all(RefreshToken) if t.token_hash == token_hash), None)

    async def spend_refresh_token(self, _session: object, token_id: str, now: dt.datetime) -> bool:
        token = self._by_id(RefreshToken, token_id)
        if token is None or token.spent_at is not None:
            return False
        token.spent_at = now
        return True

    async def family_started_at(self, _session: object, family_id: str) -> dt.datetime | None:
        issued = [t.issued_at for t in self.all(RefreshToken) if t.family_id == family_id]
        return min(issued, default=None)

    async def revoke_family(self, _session: object, family_id: str, now: dt.datetime) -> None:
        for token in self.all(RefreshToken):
            if token.family_id == family_id and token.revoked_at is None:
                token.revoked_at = now

    async def revoke_user_sessions(self, _session: object, user_id: str, now: dt.datetime) -> None:
        for token in self.all(RefreshToken):
            if token.user_id == user_id and token.revoked_at is None:
                token.revoked_at = now

    async def get_invitation(self, _session: object, token_hash: str) -> Invitation | None:
        return next((i for i in self.all(Invitation) if i.token_hash == token_hash), None)

    async def get_patient(self, _session: object, patient_id: str) -> Patient | None:
        return self._by_id(Patient, patient_id)

    async def patient_reference(
        self, _session: object, patient_id: str
    ) -> tuple[str, str, str | None] | None:
        patient = self._by_id(Patient, patient_id)
        return None if patient is None else (patient.id, patient.organisation_id, patient.ward_id)

    async def patient_wards(
        self, _session: object, patient_ids: Sequence[str]
    ) -> dict[str, str | None]:
        return {p.id: p.ward_id for p in self.all(Patient) if p.id in patient_ids}

    async def patient_by_identifier(
        self, _session: object, organisation_id: str, system: str, value: str
    ) -> Patient | None:
        return next(
            (
                p
                for p in self.all(Patient)
                if (p.organisation_id, p.identifier_system, p.identifier_value)
                == (organisation_id, system, value)
            ),
            None,
        )

    async def patient_identifier_taken(
        self, session: object, organisation_id: str, system: str, value: str
    ) -> bool:
        return await self.patient_by_identifier(session, organisation_id, system, value) is not None

    async def page_patients(
        self,
        _session: object,
        organisation_id: str,
        *,
        only: frozenset[str] | None,
        limit: int,
        after: tuple[dt.datetime, str] | None,
    ) -> list[Patient]:
        found = [
            p
            for p in self.all(Patient)
            if p.organisation_id == organisation_id
            and (only is None or p.id in only)
            and (after is None or (p.created_at, p.id) < after)
        ]
        return sorted(found, key=lambda p: (p.created_at, p.id), reverse=True)[:limit]

    async def patients_by_ids(self, _session: object, patient_ids: Sequence[str]) -> list[Patient]:
        return [p for p in self.all(Patient) if p.id in patient_ids]

    async def search_patients(
        self,
        _session: object,
        organisation_id: str,
        query: PatientQuery,
        *,
        limit: int,
        after: tuple[dt.datetime, str] | None,
    ) -> list[Patient]:
        def matches(p: Patient) -> bool:
            name = (query.name or "").lower()
            return (
                p.organisation_id == organisation_id
                and query.identifier_system in (None, p.identifier_system)
                and query.identifier_value in (None, p.identifier_value)
                and query.ward_id in (None, p.ward_id)
                and (query.ids is None or p.id in query.ids)
                and (query.patients is None or p.id in query.patients)
                and (
                    p.family_name.lower().startswith(name) or p.given_name.lower().startswith(name)
                )
                and (after is None or (p.created_at, p.id) < after)
            )

        found = [p for p in self.all(Patient) if matches(p)]
        return sorted(found, key=lambda p: (p.created_at, p.id), reverse=True)[:limit]

    async def care_scope_patient_ids(
        self, _session: object, user_id: str, organisation_id: str, now: dt.datetime
    ) -> frozenset[str]:
        wards = {m.ward_id for m in self.all(WardMember) if m.user_id == user_id}
        in_wards = {
            p.id
            for p in self.all(Patient)
            if p.organisation_id == organisation_id and p.ward_id in wards
        }
        granted = {
            g.patient_id
            for g in self.all(BreakGlassGrant)
            if g.user_id == user_id and g.organisation_id == organisation_id and g.expires_at > now
        }
        return frozenset(in_wards | granted)

    async def ward_member_ids(
        self, _session: object, organisation_id: str, ward_id: str
    ) -> list[str]:
        wards = {w.id for w in self.all(Ward) if w.organisation_id == organisation_id}
        active = {u.id for u in self.all(UserAccount) if u.is_active}
        return sorted(
            m.user_id
            for m in self.all(WardMember)
            if m.ward_id == ward_id and m.ward_id in wards and m.user_id in active
        )

    def _by_id(self, model: type[Row], row_id: str) -> Row | None:
        return next((r for r in self.all(model) if getattr(r, "id", None) == row_id), None)


def repository_functions() -> list[str]:
    """Name every query of the real repository, which the fake must all replace."""
    return sorted(
        name
        for name, value in vars(repository).items()
        if callable(value) and getattr(value, "__module__", None) == repository.__name__
    )


def _columns(row: Base) -> dict[str, Any]:
    return {attr.key: getattr(row, attr.key) for attr in row.__mapper__.column_attrs}


class FakeSession:
    """What use cases do with `uow.session`; `added` keeps every row ever added, in order."""

    def __init__(self, repo: InMemoryRepository) -> None:
        self.repo = repo
        self.added: list[object] = []

    def add(self, row: Base) -> None:
        self.added.append(row)
        self.repo.put(row)

    async def flush(self) -> None:
        """Rows are visible as soon as they are added: nothing to send."""

    async def get(self, model: type[Row], row_id: str) -> Row | None:
        return next((r for r in self.repo.all(model) if getattr(r, "id", None) == row_id), None)

    async def __aenter__(self) -> FakeSession:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None


class FakeUnitOfWork:
    """Collects what a use case publishes; `committed` holds what it committed, in order."""

    def __init__(self, clock: FrozenClock, repo: InMemoryRepository) -> None:
        self.clock = clock
        self.repo = repo
        self.session = FakeSession(repo)
        self.pending: list[Event] = []
        self.committed: list[Event] = []
        self.commits = 0

    @property
    def port(self) -> UnitOfWork:
        """This fake, typed as the unit of work the use cases take."""
        return cast(UnitOfWork, self)

    @property
    def factory(self) -> UnitOfWorkFactory:
        """A factory that hands out this fake, for use cases that open their own."""
        return lambda: self.port

    async def __aenter__(self) -> FakeUnitOfWork:
        self.pending = []
        self.repo.begin()
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.pending = []
        self.repo.rollback()

    def publish(self, event: Event) -> None:
        self.pending.append(event)

    async def commit(self) -> None:
        self.committed += self.pending
        self.pending = []
        self.repo.keep()
        self.commits += 1

    def audited(
        self, outcome: Outcome | None = None, *, action: str | None = None
    ) -> list[AuditRecorded]:
        """Return the committed audit records, of one outcome or action if given."""
        return [
            e
            for e in self.published(AuditRecorded)
            if (outcome is None or e.outcome == outcome) and (action is None or e.action == action)
        ]

    def published(self, kind: type[E]) -> list[E]:
        """Return the committed events of one type."""
        return [e for e in self.committed if isinstance(e, kind)]


def token_service(clock: Clock) -> TokenService:
    """Issue access tokens of 15 minutes with a fresh key, on `clock`."""
    return TokenService(
        TokenKeys(Ed25519PrivateKey.generate()),
        issuer="medcloud",
        audience="medcloud-api",
        lifetime=dt.timedelta(minutes=15),
        clock=clock,
    )


def care_directory(repo: InMemoryRepository, clock: FrozenClock) -> SqlCareDirectory:
    """The real care directory, reading the fake repository through fake sessions."""

    def sessions() -> FakeSession:
        return FakeSession(repo)

    return SqlCareDirectory(cast(async_sessionmaker[AsyncSession], sessions), clock)


# --- the cast ------------------------------------------------------------------------------------

ST_MARYS, MALLORY_HEALTH = "org-st-marys", "org-mallory-health"
CARDIOLOGY, ONCOLOGY, MALLORY_WARD = "ward-cardiology", "ward-oncology", "ward-mallory"


@dataclass(frozen=True)
class Member:
    """A user of the cast: who they are, where, and in which care teams."""

    name: str
    organisation_id: str
    role: Role
    wards: tuple[str, ...] = ()

    @property
    def principal(self) -> UserPrincipal:
        return UserPrincipal(self.name, self.organisation_id, self.role)

    @property
    def email(self) -> str:
        domain = "stmary.example" if self.organisation_id == ST_MARYS else "mallory.example"
        return f"{self.name}@{domain}"


ALICE = Member("alice_admin", ST_MARYS, Role.ADMIN)
CAROL = Member("carol_clinician", ST_MARYS, Role.CLINICIAN, (CARDIOLOGY,))
NINA = Member("nina_nurse", ST_MARYS, Role.NURSE, (CARDIOLOGY,))
BOB = Member("bob_other_ward", ST_MARYS, Role.CLINICIAN, (ONCOLOGY,))
TESS = Member("tess_technician", ST_MARYS, Role.TECHNICIAN)
AUDREY = Member("audrey_auditor", ST_MARYS, Role.AUDITOR)
MALLORY = Member("mallory_other_org", MALLORY_HEALTH, Role.ADMIN)
MALLORY_CLINICIAN = Member("mallory_clinician", MALLORY_HEALTH, Role.CLINICIAN, (MALLORY_WARD,))
CAST = (ALICE, CAROL, NINA, BOB, TESS, AUDREY, MALLORY, MALLORY_CLINICIAN)

# Peter is in Cardiology (carol's and nina's), Olive in Oncology (bob's); Mallory has her own.
PETER, OLIVE, MALLORYS_PATIENT = "patient-peter", "patient-olive", "patient-mallorys"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"


async def seed_cast(repo: InMemoryRepository) -> None:
    """Store both organisations, their wards, the cast (password PASSWORD) and three patients."""
    password_hash = await hash_password(PASSWORD)
    past = NOW - dt.timedelta(days=30)
    repo.put(
        Organisation(id=ST_MARYS, name="St Mary's", require_admin_mfa=False, created_at=past),
        Organisation(
            id=MALLORY_HEALTH, name="Mallory Health", require_admin_mfa=False, created_at=past
        ),
        Ward(id=CARDIOLOGY, organisation_id=ST_MARYS, name="Cardiology", created_at=past),
        Ward(id=ONCOLOGY, organisation_id=ST_MARYS, name="Oncology", created_at=past),
        Ward(id=MALLORY_WARD, organisation_id=MALLORY_HEALTH, name="Cardiology", created_at=past),
    )
    for number, member in enumerate(CAST):
        repo.put(
            UserAccount(
                id=member.name,
                organisation_id=member.organisation_id,
                email=member.email,
                password_hash=password_hash,
                role=member.role.value,
                is_active=True,
                created_at=past + dt.timedelta(minutes=number),
                failed_logins=0,
                locked_until=None,
                totp_secret=None,
                mfa_enabled=False,
                last_login_at=None,
            ),
            *(WardMember(user_id=member.name, ward_id=ward) for ward in member.wards),
        )
    for number, (patient_id, organisation_id, ward_id, value) in enumerate(
        (
            (PETER, ST_MARYS, CARDIOLOGY, "P-1001"),
            (OLIVE, ST_MARYS, ONCOLOGY, "P-2002"),
            (MALLORYS_PATIENT, MALLORY_HEALTH, MALLORY_WARD, "P-1001"),
        )
    ):
        repo.put(
            Patient(
                id=patient_id,
                organisation_id=organisation_id,
                identifier_system=NHS_NUMBER,
                identifier_value=value,
                family_name=f"Family-{value}",
                given_name=f"Given-{value}",
                birth_date=dt.date(1950, 5, 17),
                ward_id=ward_id,
                created_at=past + dt.timedelta(hours=number),
            )
        )
