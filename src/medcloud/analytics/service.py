"""Use cases of the analytics context: alarms (list, acknowledge, silence) and the rules.
Technical alarms (a device's, or a failure to notify) are in `technical.py`, NEWS2 and forecasts
in `scores.py`, alarm-fatigue figures in `figures.py`, the live evaluation of readings in
`evaluation.py`, advisories in `advisories.py`, the model registry in `modelling.py`.
"""

from __future__ import annotations

import datetime as dt
import uuid

import structlog

from medcloud.analytics import repository
from medcloud.analytics.alarms import Action as AlarmAction
from medcloud.analytics.alarms import AlarmState, transition
from medcloud.analytics.changes import publish_change, rule_of
from medcloud.analytics.events import AlertAcknowledged, AlertResolved, AlertSilenced
from medcloud.analytics.models import OPEN_STATES, AlarmRule, Alert
from medcloud.analytics.rules import Rule, Scope, default_rules, effective_rules
from medcloud.analytics.rules import validate as validate_rule
from medcloud.analytics.schemas import AlertPage, AlertRead, AlertSource, RuleIn, RulePage, RuleRead
from medcloud.analytics.scores import patient_in_scope
from medcloud.config import Settings
from medcloud.platform.audit import audit_record
from medcloud.platform.directory import CareDirectory, CareScope, PatientDirectory
from medcloud.platform.errors import FieldError, Forbidden, Invalid, NotFound
from medcloud.platform.paging import decode_cursor, page_of
from medcloud.platform.policy import ensure_in_care_scope
from medcloud.platform.security import Role, UserPrincipal
from medcloud.platform.uow import UnitOfWork

log = structlog.get_logger(__name__)


# Alarms


async def list_alerts(
    *,
    uow: UnitOfWork,
    care: CareDirectory,
    principal: UserPrincipal,
    device_id: str | None = None,
    patient_id: str | None = None,
    source: AlertSource | None = None,
    state: str | None = None,
    priority: str | None = None,
    limit: int,
    cursor: str | None,
) -> AlertPage:
    """Return alarms about the patients in the user's care scope, newest first (audited).

    `state=open` means active or acknowledged.
    """
    scope = await care.scope(principal.user_id, principal.organisation_id, principal.role.value)
    after = decode_cursor(cursor) if cursor else None
    states = None if state is None else (OPEN_STATES if state == "open" else (state,))
    async with uow:
        alerts = await repository.page(
            uow.session,
            principal.organisation_id,
            patients=None if scope.whole_organisation else scope.patient_ids,
            device_id=device_id,
            patient_id=patient_id,
            source=None if source is None else source.value,
            states=states,
            priority=priority,
            limit=limit + 1,
            after=after,
        )
        uow.publish(
            audit_record(
                principal,
                "alerts.read",
                occurred_at=uow.clock.now(),
                object_type="alert",
                patient_id=patient_id,
                detail={
                    "count": min(len(alerts), limit),
                    "device_id": device_id,
                    "source": None if source is None else source.value,
                },
            )
        )
        await uow.commit()
    shown, next_cursor = page_of(alerts, limit, lambda a: (a.raised_at, a.id))
    return AlertPage(
        items=[AlertRead.model_validate(alert) for alert in shown], next_cursor=next_cursor
    )


async def _alarm_in_scope(
    uow: UnitOfWork, care: CareDirectory, principal: UserPrincipal, alert_id: str
) -> Alert:
    alert = await repository.get_alarm(uow.session, alert_id, lock=True)
    if alert is None or alert.organisation_id != principal.organisation_id:
        raise NotFound("alert not found")
    scope = await care.scope(principal.user_id, principal.organisation_id, principal.role.value)
    ensure_in_care_scope(scope, alert.patient_id, "alert")
    return alert


async def get_alert(
    *, uow: UnitOfWork, care: CareDirectory, principal: UserPrincipal, alert_id: str
) -> AlertRead:
    """Return one alarm in the user's care scope (audited)."""
    async with uow:
        alert = await _alarm_in_scope(uow, care, principal, alert_id)
        uow.publish(
            audit_record(
                principal,
                "alert.read",
                occurred_at=uow.clock.now(),
                object_type="alert",
                object_id=alert.id,
                patient_id=alert.patient_id,
            )
        )
        await uow.commit()
    return AlertRead.model_validate(alert)


async def acknowledge_alert(
    *, uow: UnitOfWork, care: CareDirectory, principal: UserPrincipal, alert_id: str
) -> AlertRead:
    """Acknowledge an alarm: it stops escalating; a latched alarm whose condition is over
    resolves."""
    async with uow:
        alert = await _alarm_in_scope(uow, care, principal, alert_id)
        _acknowledge(uow, alert, principal.user_id)
        await uow.commit()
    return AlertRead.model_validate(alert)


def _acknowledge(uow: UnitOfWork, alert: Alert, actor_id: str) -> None:
    """Acknowledge a stored alarm (409 unless open and unacknowledged), publishing the change."""
    now = uow.clock.now()
    moved = transition(
        AlarmState(alert.state),
        latching=alert.latching,
        condition_active=alert.condition_active,
        action=AlarmAction.ACKNOWLEDGE,
    )
    alert.state = AlarmState.ACKNOWLEDGED.value
    alert.acknowledged_at, alert.acknowledged_by, alert.updated_at = now, actor_id, now
    publish_change(uow, AlertAcknowledged, alert, now=now, actor_id=actor_id)
    if moved.state == AlarmState.RESOLVED:
        alert.state, alert.resolved_at = AlarmState.RESOLVED.value, now
        publish_change(uow, AlertResolved, alert, now=now, actor_id=actor_id)


async def silence_alert(
    *,
    uow: UnitOfWork,
    care: CareDirectory,
    settings: Settings,
    principal: UserPrincipal,
    alert_id: str,
    seconds: float,
) -> AlertRead:
    """Pause one alarm's audible signal for a bounded time; nothing else is muted."""
    limit = settings.alerts.max_silence_seconds
    if seconds > limit:
        raise Invalid(
            "silence is limited in time",
            errors=[FieldError("seconds", f"at most {limit:g} s")],
        )
    async with uow:
        alert = await _alarm_in_scope(uow, care, principal, alert_id)
        now = uow.clock.now()
        transition(
            AlarmState(alert.state),
            latching=alert.latching,
            condition_active=alert.condition_active,
            action=AlarmAction.SILENCE,
        )
        alert.silenced_until = now + dt.timedelta(seconds=seconds)
        alert.silenced_by, alert.updated_at = principal.user_id, now
        alert.silence_count += 1
        publish_change(uow, AlertSilenced, alert, now=now, actor_id=principal.user_id)
        await uow.commit()
    return AlertRead.model_validate(alert)


async def acknowledge_by_link(*, uow: UnitOfWork, alert_id: str, user_id: str) -> None:
    """Acknowledge an alarm for someone who used the signed link they were sent.

    The link proves who it was sent to: the notifications context paged that person about this
    alarm, and checked the signature, the expiry and that the link was not used before.
    """
    alert = await repository.get_alarm(uow.session, alert_id, lock=True)
    if alert is None or alert.state != AlarmState.ACTIVE.value:
        return  # acknowledged or resolved meanwhile: the link has nothing left to do
    _acknowledge(uow, alert, user_id)


# Rules


async def list_rules(
    *,
    uow: UnitOfWork,
    settings: Settings,
    patients: PatientDirectory,
    care: CareDirectory,
    principal: UserPrincipal,
    patient_id: str | None = None,
) -> RulePage:
    """Return the organisation's configured rules and the defaults; with `patient_id`, only
    the rules that apply to that patient."""
    async with uow:
        configured = [
            rule_of(r) for r in await repository.rules_of(uow.session, [principal.organisation_id])
        ]
    defaults = default_rules(settings.alerts)
    if patient_id is not None:
        patient = await patient_in_scope(patients, care, principal, patient_id)
        applied = effective_rules(
            defaults, configured, ward_id=patient.ward_id, patient_id=patient_id
        )
        return RulePage(items=[RuleRead.model_validate(r) for r in applied], defaults=[])
    reach = _Reach(care, principal)
    return RulePage(
        items=[
            RuleRead.model_validate(r)
            for r in configured
            if r.scope == Scope.ORGANISATION or await reach.covers(r.scope, r.scope_id)
        ],
        defaults=[RuleRead.model_validate(r) for r in defaults],
    )


class _Reach:
    """Which rules a user may see and set: an admin all of the organisation's; a clinician or
    nurse those of their own care teams' wards and patients. An organisation-wide rule changes
    the alarms of every patient, which is no one care team's call: admins set those (everyone
    sees them, since they apply to everyone's patients)."""

    def __init__(self, care: CareDirectory, principal: UserPrincipal) -> None:
        self._care = care
        self._principal = principal
        self._patients: CareScope | None = None

    async def covers(self, scope: Scope | str, scope_id: str) -> bool:
        principal = self._principal
        if principal.role == Role.ADMIN:
            return True
        if scope == Scope.WARD:
            members = await self._care.ward_members(principal.organisation_id, scope_id)
            return principal.user_id in members
        if scope == Scope.PATIENT:
            if self._patients is None:
                self._patients = await self._care.scope(
                    principal.user_id, principal.organisation_id, principal.role.value
                )
            return self._patients.allows(scope_id)
        return False

    async def ensure(self, scope: Scope | str, scope_id: str, *, noun: str) -> None:
        """Refuse a rule out of reach: 403 for an organisation-wide one, else 404 as if absent
        (the API never confirms another care team's patients or rules)."""
        if await self.covers(scope, scope_id):
            return
        if scope in (Scope.ORGANISATION, Scope.DEFAULT):
            raise Forbidden("organisation-wide rules are set by admins")
        raise NotFound(f"{noun} not found")


async def save_rule(
    *,
    uow: UnitOfWork,
    patients: PatientDirectory,
    care: CareDirectory,
    principal: UserPrincipal,
    body: RuleIn,
    rule_id: str | None = None,
) -> RuleRead:
    """Create a rule, or change one (its version goes up); validated and audited."""
    candidate = Rule(
        key=body.key,
        kind=body.kind,
        measurement=body.measurement,
        priority=body.priority,
        low=body.low,
        high=body.high,
        hysteresis=body.hysteresis,
        delay_seconds=body.delay_seconds,
        window_seconds=body.window_seconds,
        latching=body.latching,
        enabled=body.enabled,
        scope=body.scope,
        scope_id=body.scope_id,
    )
    reach = _Reach(care, principal)
    if rule_id is not None:
        # Another organisation's rule is answered as absent before anything about the body.
        async with uow:
            found = await repository.get_rule(uow.session, rule_id)
        if found is None or found.organisation_id != principal.organisation_id:
            raise NotFound("rule not found")
        await reach.ensure(found.scope, found.scope_id, noun="rule")
    errors = validate_rule(candidate)
    errors += await _scope_errors(patients, principal.organisation_id, body.scope, body.scope_id)
    if errors:
        raise Invalid("the rule cannot be saved", errors=errors)
    await reach.ensure(body.scope, body.scope_id, noun=body.scope.value)
    async with uow:
        now = uow.clock.now()
        existing = await repository.find_rule(
            uow.session, principal.organisation_id, body.scope.value, body.scope_id, body.key
        )
        if rule_id is not None:
            row = await repository.get_rule(uow.session, rule_id)
            if row is None:
                raise NotFound("rule not found")
            if existing is not None and existing.id != row.id:
                raise Invalid(
                    "another rule has this key at this scope",
                    errors=[FieldError("key", "taken at this scope")],
                )
        elif existing is not None:
            row = existing
        else:
            row = AlarmRule(
                id=str(uuid.uuid4()), organisation_id=principal.organisation_id, version=0
            )
            uow.session.add(row)
        row.scope, row.scope_id, row.key = body.scope.value, body.scope_id, body.key
        row.kind, row.measurement, row.priority = body.kind.value, body.measurement, body.priority
        row.low, row.high, row.hysteresis = body.low, body.high, float(body.hysteresis)
        row.delay_seconds, row.window_seconds = float(body.delay_seconds), body.window_seconds
        row.latching, row.enabled = body.latching, body.enabled
        row.version = (row.version or 0) + 1
        row.updated_at, row.updated_by = now, principal.user_id
        uow.publish(
            audit_record(
                principal,
                "alarm_rule.saved",
                occurred_at=now,
                object_type="alarm_rule",
                object_id=row.id,
                patient_id=body.scope_id if body.scope == Scope.PATIENT else None,
                detail={"key": body.key, "scope": body.scope.value, "version": row.version},
            )
        )
        await uow.commit()
    return RuleRead.model_validate(rule_of(row))


async def _scope_errors(
    patients: PatientDirectory, organisation_id: str, scope: Scope, scope_id: str
) -> list[FieldError]:
    if scope in (Scope.ORGANISATION, Scope.DEFAULT):
        if scope == Scope.DEFAULT:
            return [FieldError("scope", "defaults come from settings; use organisation")]
        return [] if not scope_id else [FieldError("scope_id", "empty for the organisation")]
    if scope == Scope.WARD:
        if not scope_id or not await patients.has_ward(organisation_id, scope_id):
            return [FieldError("scope_id", "a ward of the organisation")]
        return []
    patient = await patients.get(scope_id) if scope_id else None
    if patient is None or patient.organisation_id != organisation_id:
        return [FieldError("scope_id", "a patient of the organisation")]
    return []


async def delete_rule(
    *, uow: UnitOfWork, care: CareDirectory, principal: UserPrincipal, rule_id: str
) -> None:
    """Remove a configured rule: the broader rule of its key applies again (audited)."""
    async with uow:
        row = await repository.get_rule(uow.session, rule_id)
        if row is None or row.organisation_id != principal.organisation_id:
            raise NotFound("rule not found")
        await _Reach(care, principal).ensure(row.scope, row.scope_id, noun="rule")
        await uow.session.delete(row)
        uow.publish(
            audit_record(
                principal,
                "alarm_rule.deleted",
                occurred_at=uow.clock.now(),
                object_type="alarm_rule",
                object_id=row.id,
                detail={"key": row.key, "scope": row.scope, "version": row.version},
            )
        )
        await uow.commit()


# NEWS2
