"""Use cases of the reports context's API: make a report now, read, list, download."""

from __future__ import annotations

import datetime as dt

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.platform.audit import audit_record
from medcloud.platform.directory import CareScope
from medcloud.platform.errors import FieldError, Forbidden, Invalid, NotFound, OutOfScope
from medcloud.platform.objects import ObjectNotFound
from medcloud.platform.paging import decode_cursor, page_of
from medcloud.platform.security import UserPrincipal
from medcloud.platform.uow import UnitOfWork
from medcloud.reports import links, repository
from medcloud.reports.making import (
    EXTENSIONS,
    MEDIA_TYPES,
    ReportFile,
    Sources,
    Subject,
    audit_of,
    make,
    object_key,
    record,
)
from medcloud.reports.models import Report
from medcloud.reports.schemas import (
    Downloads,
    FileFormat,
    ReportCreate,
    ReportPage,
    ReportQuery,
    ReportRead,
    ReportSummary,
    Scope,
    Trigger,
)

log = structlog.get_logger(__name__)


async def create_report(
    *, uow: UnitOfWork, sources: Sources, principal: UserPrincipal, body: ReportCreate
) -> ReportRead:
    """Make a report of one day now, for a subject in the user's reach (audited)."""
    subject = _subject_of(principal, body)
    now = uow.clock.now()
    if body.day > now.date():
        raise Invalid("the day has not begun", errors=[FieldError("body.day", "a future day")])
    try:
        await _ensure_may_read(sources, principal, subject)
    except OutOfScope:
        raise
    except NotFound:
        # A ward or patient the body names that the organisation does not have, as for any
        # other field naming an object; one outside the user's care stays a 404.
        field = "ward_id" if subject.scope is Scope.WARD else "patient_id"
        raise Invalid(
            f"no such {field.removesuffix('_id')} in your organisation",
            errors=[FieldError(f"body.{field}", "not found")],
        ) from None
    facts, summary = await make(sources, subject, body.day, trigger=Trigger.ON_DEMAND, now=now)
    async with uow:
        row = record(uow, facts, summary, requested_by=principal.user_id, daily_key=None)
        uow.publish(audit_of(principal, "report.generate", row, now))
        await uow.commit()
    log.info("report.generated", report_id=facts.id, scope=subject.scope.value, trigger="on_demand")
    return _read(sources, row, now)


def _subject_of(principal: UserPrincipal, body: ReportCreate) -> Subject:
    """The subject the request names, refusing fields that do not belong to its scope."""
    named = {"ward_id": body.ward_id, "patient_id": body.patient_id}
    wanted = {Scope.ORGANISATION: None, Scope.WARD: "ward_id", Scope.PATIENT: "patient_id"}[
        body.scope
    ]
    for field, value in named.items():
        if field == wanted and not value:
            raise Invalid(
                f"a {body.scope.value} report names its {field}",
                errors=[FieldError(f"body.{field}", "required for this scope")],
            )
        if field != wanted and value is not None:
            raise Invalid(
                f"a {body.scope.value} report names no {field}",
                errors=[FieldError(f"body.{field}", "not allowed for this scope")],
            )
    return Subject(principal.organisation_id, body.scope, body.ward_id, body.patient_id)


async def _ensure_may_read(sources: Sources, principal: UserPrincipal, subject: Subject) -> None:
    """Answer 404 for a ward or patient outside the user's organisation or care scope."""
    if subject.organisation_id != principal.organisation_id:
        raise OutOfScope("report not found")
    scope = await _care_scope(sources, principal)
    if subject.scope is Scope.PATIENT:
        patient = await sources.patients.get(subject.patient_id or "")
        if patient is None or patient.organisation_id != principal.organisation_id:
            raise NotFound("patient not found")
        if not scope.allows(subject.patient_id):
            raise OutOfScope("patient not found")
    elif subject.scope is Scope.WARD:
        ward_id = subject.ward_id or ""
        if not await sources.patients.has_ward(principal.organisation_id, ward_id):
            raise NotFound("ward not found")
        if not scope.whole_organisation and principal.user_id not in (
            await sources.care.ward_members(principal.organisation_id, ward_id)
        ):
            raise OutOfScope("ward not found")
    elif not scope.whole_organisation:
        # An organisation's figures include patients outside the user's care teams.
        raise Forbidden("an organisation report needs the whole organisation in your care")


async def _care_scope(sources: Sources, principal: UserPrincipal) -> CareScope:
    return await sources.care.scope(
        principal.user_id, principal.organisation_id, principal.role.value
    )


async def get_report(
    *, uow: UnitOfWork, sources: Sources, principal: UserPrincipal, report_id: str
) -> ReportRead:
    """Return a report the user may read (audited); 404 otherwise."""
    async with uow:
        row = await repository.get(uow.session, report_id)
        if row is None or row.organisation_id != principal.organisation_id:
            raise NotFound("report not found")
        subject = Subject(row.organisation_id, Scope(row.scope), row.ward_id, row.patient_id)
        try:
            await _ensure_may_read(sources, principal, subject)
        except (NotFound, Forbidden):
            raise OutOfScope("report not found") from None
        now = uow.clock.now()
        uow.publish(audit_of(principal, "report.read", row, now))
        await uow.commit()
    return _read(sources, row, now)


async def list_reports(
    *,
    session: AsyncSession,
    sources: Sources,
    principal: UserPrincipal,
    query: ReportQuery,
    now: dt.datetime,
) -> ReportPage:
    """List the reports the user may read, newest first."""
    scope = await _care_scope(sources, principal)
    wards: frozenset[str] = frozenset()
    if not scope.whole_organisation:
        # A user's wards are those of the patients in their care they are a member of (a
        # break-glass grant opens one patient, not the patient's ward).
        found = await sources.patients.wards(sorted(scope.patient_ids))
        members = {
            ward: await sources.care.ward_members(principal.organisation_id, ward)
            for ward in {w for w in found.values() if w is not None}
        }
        wards = frozenset(ward for ward, ids in members.items() if principal.user_id in ids)
    rows = await repository.page(
        session,
        principal.organisation_id,
        allowed=repository.visible(scope.whole_organisation, wards, scope.patient_ids),
        scope=query.scope.value if query.scope is not None else None,
        ward_id=query.ward_id,
        patient_id=query.patient_id,
        after=decode_cursor(query.cursor) if query.cursor else None,
        limit=query.limit + 1,
    )
    shown, cursor = page_of(rows, query.limit, lambda r: (r.generated_at, r.id))
    return ReportPage(items=[_read(sources, row, now) for row in shown], next_cursor=cursor)


def _read(sources: Sources, row: Report, now: dt.datetime) -> ReportRead:
    expires = int(now.timestamp()) + sources.link_minutes * 60
    urls = {
        file_format.value: (
            f"/api/v1/reports/{row.id}/files/{file_format.value}?expires={expires}"
            f"&signature={links.sign(sources.link_key, row.id, file_format.value, expires)}"
        )
        for file_format in FileFormat
    }
    return ReportRead(
        id=row.id,
        organisation_id=row.organisation_id,
        scope=Scope(row.scope),
        ward_id=row.ward_id,
        patient_id=row.patient_id,
        day=row.day,
        trigger=Trigger(row.trigger),
        generated_at=row.generated_at,
        summary=ReportSummary.model_validate(row.summary),
        downloads=Downloads(**urls, expires_at=dt.datetime.fromtimestamp(expires, tz=dt.UTC)),
    )


async def download(
    *,
    uow: UnitOfWork,
    sources: Sources,
    report_id: str,
    file_format: FileFormat,
    expires: int,
    signature: str,
) -> ReportFile:
    """Return a report's file for a valid, unexpired signed link (audited)."""
    now = uow.clock.now()
    if not links.verify(
        sources.link_key, report_id, file_format.value, expires, signature, now=now.timestamp()
    ):
        raise Forbidden("the link is not valid, or no longer")
    async with uow:
        row = await repository.get(uow.session, report_id)
        if row is None:
            raise NotFound("report not found")
        try:
            content = await sources.objects.read_bytes(
                object_key(row.organisation_id, row.id, file_format)
            )
        except ObjectNotFound:
            # Removed from the store behind the platform's back (a retention rule, a person).
            raise NotFound("the report's file is no longer stored") from None
        event = audit_record(
            None,
            "report.download",
            occurred_at=now,
            organisation_id=row.organisation_id,
            object_type="report",
            object_id=row.id,
            patient_id=row.patient_id,
            detail={"format": file_format.value, "scope": row.scope},
        )
        uow.publish(event)
        await uow.commit()
    filename = f"medcloud-report-{row.day.isoformat()}-{row.scope}-{row.id[:8]}"
    return ReportFile(content, MEDIA_TYPES[file_format], f"{filename}.{EXTENSIONS[file_format]}")
