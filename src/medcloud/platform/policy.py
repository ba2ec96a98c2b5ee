"""The access policy: one place that answers "may this principal do this?".

Routes declare the action they perform (`Authorize(Action.READINGS_READ)`); services then keep
every query inside the principal's organisation, so an object of another organisation is
indistinguishable from one that does not exist (404).
"""

from __future__ import annotations

from enum import StrEnum

from medcloud.platform.directory import CareScope
from medcloud.platform.errors import Forbidden, OutOfScope
from medcloud.platform.security import DevicePrincipal, Principal, Role, UserPrincipal


class Action(StrEnum):
    """Everything a principal can ask to do."""

    DEVICE_REGISTER = "device:register"
    DEVICE_READ = "device:read"
    READINGS_WRITE = "readings:write"
    READINGS_READ = "readings:read"
    ALERTS_READ = "alerts:read"
    ALERTS_ACKNOWLEDGE = "alerts:acknowledge"
    ALARM_RULES_READ = "alarm-rules:read"
    ALARM_RULES_MANAGE = "alarm-rules:manage"
    ALARM_FIGURES_READ = "alarm-figures:read"
    SCORE_CALCULATE = "score:calculate"
    SCORING_SET = "patient:scoring"
    MODELS_READ = "models:read"
    PATIENT_READ = "patient:read"
    PATIENT_WRITE = "patient:write"
    BREAK_GLASS = "patient:break-glass"
    USER_MANAGE = "user:manage"
    WARD_MANAGE = "ward:manage"
    WARD_READ = "ward:read"
    PROFILE_READ = "profile:read"
    AUDIT_READ = "audit:read"
    NOTIFICATIONS_MANAGE = "notifications:manage"
    NOTIFICATION_PREFERENCES = "notifications:preferences"
    ROSTER_READ = "roster:read"
    INBOX_READ = "inbox:read"
    INTERFACES_MANAGE = "interfaces:manage"
    REPORTS_READ = "reports:read"
    REPORTS_GENERATE = "reports:generate"


CLINICAL = frozenset(
    {
        Action.READINGS_READ,
        Action.ALERTS_READ,
        Action.ALERTS_ACKNOWLEDGE,
        Action.ALARM_RULES_READ,
        Action.ALARM_FIGURES_READ,
        Action.SCORE_CALCULATE,
        Action.DEVICE_READ,
        Action.PATIENT_READ,
        Action.PATIENT_WRITE,
        Action.WARD_READ,
        Action.PROFILE_READ,
        Action.ROSTER_READ,
        Action.INBOX_READ,
        Action.NOTIFICATION_PREFERENCES,
        Action.REPORTS_READ,
        Action.REPORTS_GENERATE,
    }
)

ROLE_PERMISSIONS: dict[Role, frozenset[Action]] = {
    # Admins run their organisation; they see its clinical data (audited) but are no device and
    # need no break-glass, since nothing in their organisation is outside their reach.
    # The SpO2 scale of a patient is a clinical judgement, so it is the clinician's alone.
    Role.ADMIN: frozenset(Action) - {Action.READINGS_WRITE, Action.BREAK_GLASS, Action.SCORING_SET},
    Role.CLINICIAN: CLINICAL | {Action.BREAK_GLASS, Action.ALARM_RULES_MANAGE, Action.SCORING_SET},
    Role.NURSE: CLINICAL,
    # Technicians keep devices running; they never see readings, alerts or patients.
    # The NEWS2 calculator reads no stored data: any signed-in user may use it.
    Role.TECHNICIAN: frozenset(
        {
            Action.DEVICE_REGISTER,
            Action.DEVICE_READ,
            Action.WARD_READ,
            Action.PROFILE_READ,
            Action.SCORE_CALCULATE,
            # Technicians are told when a device or a notification channel needs them.
            Action.INBOX_READ,
            Action.NOTIFICATION_PREFERENCES,
        }
    ),
    # Auditors read the reports the platform made (their figures are its record of a day);
    # making new ones is clinical work.
    Role.AUDITOR: frozenset(
        {Action.AUDIT_READ, Action.PROFILE_READ, Action.SCORE_CALCULATE, Action.REPORTS_READ}
    ),
}

DEVICE_PERMISSIONS = frozenset({Action.READINGS_WRITE})


def allowed(principal: Principal, action: Action) -> bool:
    """Tell whether `principal` may perform `action` at all."""
    if isinstance(principal, DevicePrincipal):
        return action in DEVICE_PERMISSIONS
    return action in ROLE_PERMISSIONS[principal.role]


def authorize(principal: Principal, action: Action) -> None:
    """Raise Forbidden unless `principal` may perform `action`."""
    if not allowed(principal, action):
        raise Forbidden(f"not permitted: {action.value}")


def authorize_device_write(principal: Principal, device_id: str) -> DevicePrincipal:
    """Let a device write only its own data."""
    authorize(principal, Action.READINGS_WRITE)
    assert isinstance(principal, DevicePrincipal)  # noqa: S101  (only devices hold that right)
    if principal.device_id != device_id:
        raise Forbidden("a device may only send its own data")
    return principal


def ensure_self_or_manager(principal: UserPrincipal, user_id: str) -> None:
    """Let users manage their own notification details; admins anyone's (404 otherwise)."""
    if principal.user_id != user_id and not allowed(principal, Action.NOTIFICATIONS_MANAGE):
        raise OutOfScope("user not found")


def ensure_same_organisation(principal: UserPrincipal, organisation_id: str, what: str) -> None:
    """Answer 404 for objects outside the principal's organisation, as if they did not exist."""
    if principal.organisation_id != organisation_id:
        raise OutOfScope(f"{what} not found")


def ensure_in_care_scope(scope: CareScope, patient_id: str | None, what: str) -> None:
    """Answer 404 for clinical data of patients outside the user's care teams and grants."""
    if not scope.allows(patient_id):
        raise OutOfScope(f"{what} not found")
