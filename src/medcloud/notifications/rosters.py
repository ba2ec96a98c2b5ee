"""Use cases that say who is told: contact details and preferences, on-call shifts, escalation
policies, the organisation's fallback contact and its webhook endpoints. Every change is audited.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import secrets
import socket
import uuid
from typing import Any, TypeVar
from urllib.parse import urlsplit

from medcloud.config import Settings
from medcloud.notifications import repository
from medcloud.notifications.escalation import DEFAULT_CHAINS, Chain, localise
from medcloud.notifications.models import OrganisationSettings, Policy, Recipient, Shift, Webhook
from medcloud.notifications.schemas import (
    OrganisationIn,
    OrganisationRead,
    PolicyIn,
    PolicyPage,
    PolicyRead,
    RecipientIn,
    RecipientRead,
    ShiftIn,
    ShiftPage,
    ShiftRead,
    StepIn,
    WebhookCreated,
    WebhookIn,
    WebhookPage,
    WebhookRead,
)
from medcloud.platform.audit import audit_record
from medcloud.platform.directory import CareDirectory, PatientDirectory
from medcloud.platform.errors import FieldError, Invalid, NotFound
from medcloud.platform.policy import ensure_self_or_manager
from medcloud.platform.security import UserPrincipal
from medcloud.platform.uow import UnitOfWork

MAX_SHIFT = dt.timedelta(hours=48)
MAX_WINDOW = dt.timedelta(days=31)


# The rows an organisation owns outright and may delete by id.
Owned = TypeVar("Owned", Shift, Policy, Webhook)


async def _delete(
    uow: UnitOfWork,
    principal: UserPrincipal,
    model: type[Owned],
    row_id: str,
    *,
    noun: str,
    object_type: str,
) -> None:
    """Delete one of the organisation's rows (404 for another's) and audit it."""
    async with uow:
        row = await uow.session.get(model, row_id)
        if row is None or row.organisation_id != principal.organisation_id:
            raise NotFound(f"{noun} not found")
        await uow.session.delete(row)
        action = f"notifications.{model.__name__.lower()}.delete"
        _audit(uow, principal, action, object_type, row_id)
        await uow.commit()


def _audit(
    uow: UnitOfWork,
    principal: UserPrincipal,
    action: str,
    object_type: str,
    object_id: str,
    detail: dict[str, Any] | None = None,
) -> None:
    uow.publish(
        audit_record(
            principal,
            action,
            occurred_at=uow.clock.now(),
            object_type=object_type,
            object_id=object_id,
            detail=detail,
        )
    )


async def _member(care: CareDirectory, principal: UserPrincipal, user_id: str) -> None:
    ensure_self_or_manager(principal, user_id)
    if not await care.is_member(user_id, principal.organisation_id):
        raise NotFound("user not found")


# Recipients


async def get_recipient(
    *, uow: UnitOfWork, care: CareDirectory, principal: UserPrincipal, user_id: str
) -> RecipientRead:
    """A user's contact details and preferences (their own, or anyone's for an admin)."""
    await _member(care, principal, user_id)
    async with uow:
        row = await uow.session.get(Recipient, user_id)
    if row is None:
        return RecipientRead(user_id=user_id)
    return RecipientRead.model_validate(row)


async def put_recipient(
    *,
    uow: UnitOfWork,
    care: CareDirectory,
    principal: UserPrincipal,
    user_id: str,
    body: RecipientIn,
) -> RecipientRead:
    """Set how a user is reached (audited: a wrong pager number silences someone)."""
    await _member(care, principal, user_id)
    async with uow:
        row = await uow.session.get(Recipient, user_id)
        if row is None:
            row = Recipient(user_id=user_id, organisation_id=principal.organisation_id)
            uow.session.add(row)
        row.email, row.phone, row.locale = body.email, body.phone, body.locale
        row.time_zone, row.channels = body.time_zone, {k: list(v) for k, v in body.channels.items()}
        row.quiet_start, row.quiet_end = body.quiet_start, body.quiet_end
        row.updated_at = uow.clock.now()
        _audit(uow, principal, "notifications.recipient.set", "user", user_id)
        await uow.commit()
    return RecipientRead.model_validate(row)


# On-call shifts


async def add_shift(
    *,
    uow: UnitOfWork,
    care: CareDirectory,
    patients: PatientDirectory,
    principal: UserPrincipal,
    body: ShiftIn,
) -> ShiftRead:
    """Put a user on call for a duty, in one ward or every ward."""
    starts = localise(body.starts_at, body.time_zone).astimezone(dt.UTC)
    ends = localise(body.ends_at, body.time_zone).astimezone(dt.UTC)
    errors = []
    if ends <= starts:
        errors.append(FieldError("ends_at", "after starts_at"))
    elif ends - starts > MAX_SHIFT:
        errors.append(FieldError("ends_at", "a shift lasts at most 48 hours"))
    if not await care.is_member(body.user_id, principal.organisation_id):
        errors.append(FieldError("user_id", "an active user of the organisation"))
    if body.ward_id is not None and not await patients.has_ward(
        principal.organisation_id, body.ward_id
    ):
        errors.append(FieldError("ward_id", "a ward of the organisation"))
    if errors:
        raise Invalid("the shift cannot be rostered", errors=errors)
    async with uow:
        row = Shift(
            id=str(uuid.uuid4()),
            organisation_id=principal.organisation_id,
            ward_id=body.ward_id,
            user_id=body.user_id,
            duty=body.duty,
            starts_at=starts,
            ends_at=ends,
            time_zone=body.time_zone,
            created_at=uow.clock.now(),
        )
        uow.session.add(row)
        _audit(
            uow,
            principal,
            "notifications.shift.add",
            "shift",
            row.id,
            {"user_id": body.user_id, "duty": body.duty, "ward_id": body.ward_id},
        )
        await uow.commit()
    return ShiftRead.model_validate(row)


async def list_shifts(
    *,
    uow: UnitOfWork,
    principal: UserPrincipal,
    ward_id: str | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> ShiftPage:
    """Shifts overlapping a window (default: the next 24 hours)."""
    start = start or uow.clock.now()
    end = end or start + dt.timedelta(days=1)
    if end <= start or end - start > MAX_WINDOW:
        raise Invalid(
            "the window is empty or too long",
            errors=[FieldError("query.end", "after start, at most 31 days later")],
        )
    async with uow:
        rows = await repository.shifts(
            uow.session, principal.organisation_id, ward_id=ward_id, start=start, end=end
        )
    return ShiftPage(items=[ShiftRead.model_validate(row) for row in rows])


async def delete_shift(*, uow: UnitOfWork, principal: UserPrincipal, shift_id: str) -> None:
    """Take a shift off the roster."""
    await _delete(uow, principal, Shift, shift_id, noun="shift", object_type="shift")


# Escalation policies


def _policy_read(row: Policy) -> PolicyRead:
    return PolicyRead(
        id=row.id,
        ward_id=row.ward_key or None,
        priority=row.priority,
        steps=[StepIn.model_validate(step) for step in row.steps],
        repeat_after_seconds=row.repeat_after_seconds,
        version=row.version,
    )


def _default_read(priority: str, chain: Chain) -> PolicyRead:
    return PolicyRead(
        id=None,
        ward_id=None,
        priority=priority,
        steps=[StepIn.model_validate(step.as_json()) for step in chain.steps],
        repeat_after_seconds=chain.repeat_after_seconds,
        version=0,
    )


async def list_policies(*, uow: UnitOfWork, principal: UserPrincipal) -> PolicyPage:
    """The organisation's escalation policies and the defaults."""
    async with uow:
        rows = await repository.policies(uow.session, principal.organisation_id)
    return PolicyPage(
        items=[_policy_read(row) for row in rows],
        defaults=[_default_read(p, chain) for p, chain in DEFAULT_CHAINS.items()],
    )


async def put_policy(
    *,
    uow: UnitOfWork,
    patients: PatientDirectory,
    principal: UserPrincipal,
    body: PolicyIn,
) -> PolicyRead:
    """Set the escalation steps of one priority for the organisation or a ward (versioned;
    alarms already escalating keep the steps they started with)."""
    if body.ward_id is not None and not await patients.has_ward(
        principal.organisation_id, body.ward_id
    ):
        raise Invalid(
            "the policy names no ward of the organisation",
            errors=[FieldError("ward_id", "a ward of the organisation")],
        )
    ward_key = body.ward_id or ""
    async with uow:
        rows = await repository.policies(uow.session, principal.organisation_id)
        row = next(
            (r for r in rows if r.ward_key == ward_key and r.priority == body.priority), None
        )
        if row is None:
            row = Policy(
                id=str(uuid.uuid4()),
                organisation_id=principal.organisation_id,
                ward_key=ward_key,
                priority=body.priority,
                version=0,
            )
            uow.session.add(row)
        row.steps = [step.model_dump() for step in body.steps]
        row.repeat_after_seconds = body.repeat_after_seconds
        row.version += 1
        row.updated_at, row.updated_by = uow.clock.now(), principal.user_id
        _audit(
            uow,
            principal,
            "notifications.policy.set",
            "escalation_policy",
            row.id,
            {"priority": body.priority, "ward_id": body.ward_id, "version": row.version},
        )
        await uow.commit()
    return _policy_read(row)


async def delete_policy(*, uow: UnitOfWork, principal: UserPrincipal, policy_id: str) -> None:
    """Drop a policy: its alarms fall back to the organisation's policy or the default."""
    await _delete(
        uow, principal, Policy, policy_id, noun="escalation policy", object_type="escalation_policy"
    )


# Organisation settings and webhooks


async def get_organisation(*, uow: UnitOfWork, principal: UserPrincipal) -> OrganisationRead:
    """The organisation's fallback contact."""
    async with uow:
        row = await repository.organisation(uow.session, principal.organisation_id)
    return OrganisationRead() if row is None else OrganisationRead.model_validate(row)


async def put_organisation(
    *, uow: UnitOfWork, principal: UserPrincipal, body: OrganisationIn
) -> OrganisationRead:
    """Set the organisation's fallback contact."""
    async with uow:
        row = await repository.organisation(uow.session, principal.organisation_id)
        if row is None:
            row = OrganisationSettings(organisation_id=principal.organisation_id)
            uow.session.add(row)
        row.fallback_email, row.fallback_phone = body.fallback_email, body.fallback_phone
        row.locale, row.updated_at = body.locale, uow.clock.now()
        _audit(
            uow, principal, "notifications.settings.set", "organisation", principal.organisation_id
        )
        await uow.commit()
    return OrganisationRead.model_validate(row)


async def list_webhooks(*, uow: UnitOfWork, principal: UserPrincipal) -> WebhookPage:
    """The organisation's webhook endpoints."""
    async with uow:
        rows = await repository.webhooks(uow.session, principal.organisation_id)
    return WebhookPage(items=[WebhookRead.model_validate(row) for row in rows])


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")


async def _webhook_target_error(
    url: str, *, allow_loopback: bool, allow_private: bool
) -> str | None:
    """Why a webhook may not point at `url`, or None: a tenant must not make medcloud call the
    cloud's metadata service, its own host's ports or (unless allowed) the hospital's private
    network, and alarm details leave only over TLS."""
    parts = urlsplit(url)
    host = (parts.hostname or "").strip("[]").lower().rstrip(".")
    addresses: list[IPAddress]
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if host == "localhost" or host.endswith(_INTERNAL_SUFFIXES) or "." not in host:
            # Names only a local resolver answers: this machine, the cluster, the metadata
            # service (metadata.google.internal), a bare host name.
            loopback = host == "localhost" or host.endswith(".localhost")
            if not (loopback and allow_loopback):
                return "not a name of this machine or its local network"
            addresses = [ipaddress.ip_address("127.0.0.1")]
        else:
            addresses = await _resolve(host)
    for address in addresses:
        refused = _address_error(
            address, allow_loopback=allow_loopback, allow_private=allow_private
        )
        if refused is not None:
            return refused
    if parts.scheme != "https" and not (
        allow_loopback and addresses and all(_unmapped(a).is_loopback for a in addresses)
    ):
        return "https only: alarm details do not cross a network in clear"
    return None


def _unmapped(address: IPAddress) -> IPAddress:
    # ::ffff:127.0.0.1 is 127.0.0.1 to the network stack, whatever ipaddress says of it.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _address_error(address: IPAddress, *, allow_loopback: bool, allow_private: bool) -> str | None:
    address = _unmapped(address)
    if address.is_link_local or address.is_multicast or address.is_unspecified:
        return "not a link-local, multicast or unspecified address"
    if address.is_loopback:
        return None if allow_loopback else "not this machine"
    if not address.is_global and not allow_private:
        return "not a private or reserved address"
    return None


async def _resolve(host: str) -> list[IPAddress]:
    """The addresses `host` resolves to now; none when it does not resolve (a name the
    deployment's resolver does not know yet is not refused for that: where it points when
    an alarm is sent is what the sender trusts its network's DNS with)."""
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM),
            RESOLVE_TIMEOUT_SECONDS,
        )
    except (OSError, TimeoutError):
        return []
    return [ipaddress.ip_address(info[4][0]) for info in infos]


RESOLVE_TIMEOUT_SECONDS = 2.0


async def add_webhook(
    *, uow: UnitOfWork, settings: Settings, principal: UserPrincipal, body: WebhookIn
) -> WebhookCreated:
    """Register an endpoint; its signing secret is generated here and shown this once."""
    refused = await _webhook_target_error(
        str(body.url),
        allow_loopback=settings.notifications.webhook_allow_loopback,
        allow_private=settings.notifications.webhook_allow_private,
    )
    if refused is not None:
        raise Invalid("the webhook cannot point there", errors=[FieldError("url", refused)])
    async with uow:
        row = Webhook(
            id=str(uuid.uuid4()),
            organisation_id=principal.organisation_id,
            url=str(body.url),
            secret="whsec_" + secrets.token_urlsafe(32),
            description=body.description,
            created_at=uow.clock.now(),
        )
        uow.session.add(row)
        _audit(uow, principal, "notifications.webhook.add", "webhook", row.id)
        await uow.commit()
    return WebhookCreated(
        id=row.id,
        url=row.url,
        description=row.description,
        created_at=row.created_at,
        secret=row.secret,
    )


async def delete_webhook(*, uow: UnitOfWork, principal: UserPrincipal, webhook_id: str) -> None:
    """Remove an endpoint; messages still queued for it are dropped when their turn comes."""
    await _delete(uow, principal, Webhook, webhook_id, noun="webhook", object_type="webhook")
