"""FHIR R4 envelopes: search and transaction bundles, OperationOutcome, CapabilityStatement, JSON.

Pure builders over fhir.resources R4B models, re-exported by `medcloud.interop.fhir`.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from fhir.resources.R4B.bundle import (
    Bundle,
    BundleEntry,
    BundleEntryRequest,
    BundleEntrySearch,
    BundleLink,
)
from fhir.resources.R4B.capabilitystatement import (
    CapabilityStatement,
    CapabilityStatementImplementation,
    CapabilityStatementRest,
    CapabilityStatementRestResource,
    CapabilityStatementRestResourceInteraction,
    CapabilityStatementRestResourceOperation,
    CapabilityStatementRestResourceSearchParam,
    CapabilityStatementRestSecurity,
    CapabilityStatementSoftware,
)
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.operationoutcome import OperationOutcome, OperationOutcomeIssue
from fhir.resources.R4B.resource import Resource

from medcloud.interop.fhir_ids import utc

Severity = Literal["fatal", "error", "warning", "information"]
IssueType = Literal[
    "invalid",
    "structure",
    "required",
    "value",
    "invariant",
    "security",
    "login",
    "unknown",
    "expired",
    "forbidden",
    "suppressed",
    "processing",
    "not-supported",
    "duplicate",
    "multiple-matches",
    "not-found",
    "deleted",
    "too-long",
    "code-invalid",
    "extension",
    "too-costly",
    "business-rule",
    "conflict",
    "transient",
    "lock-error",
    "no-store",
    "exception",
    "timeout",
    "incomplete",
    "throttled",
    "informational",
]
"""The R4 IssueType value set (http://hl7.org/fhir/issue-type)."""

_SEVERITIES = frozenset(typing.get_args(Severity))
_ISSUE_TYPES = frozenset(typing.get_args(IssueType))
_SEARCH_PARAMETER = "http://hl7.org/fhir/SearchParameter/"
_PROFILE = "http://hl7.org/fhir/StructureDefinition/"
_SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"


def searchset(
    resources: Sequence[Resource],
    *,
    base_url: str,
    total: int | None,
    self_url: str,
    next_url: str | None,
    previous_url: str | None = None,
) -> Bundle:
    """Build the searchset Bundle of one page of matches."""
    links = [("self", self_url), ("next", next_url), ("previous", previous_url)]
    return Bundle(
        type="searchset",
        total=total,
        link=[BundleLink(relation=relation, url=url) for relation, url in links if url],
        entry=[
            BundleEntry(
                fullUrl=f"{base_url.rstrip('/')}/{_local_reference(resource)}",
                resource=resource,
                search=BundleEntrySearch(mode="match"),
            )
            for resource in resources
        ]
        or None,
    )


def transaction(resources: Sequence[Resource]) -> Bundle:
    """Build a transaction Bundle that upserts each resource at its own id."""
    # PUT to Type/id is an update-as-create (R4 http.html#upsert): replaying the bundle after a
    # failure rewrites the same resources instead of duplicating them.
    return Bundle(
        type="transaction",
        entry=[
            BundleEntry(
                resource=resource,
                request=BundleEntryRequest(method="PUT", url=_local_reference(resource)),
            )
            for resource in resources
        ]
        or None,
    )


def operation_outcome(
    *,
    severity: Severity,
    code: IssueType,
    diagnostics: str,
    expression: list[str] | None = None,
) -> OperationOutcome:
    """Build an OperationOutcome with one issue."""
    if severity not in _SEVERITIES:
        raise ValueError(f"severity {severity!r} is not an R4 IssueSeverity")
    if code not in _ISSUE_TYPES:
        raise ValueError(f"code {code!r} is not an R4 IssueType")
    return OperationOutcome(
        issue=[
            OperationOutcomeIssue(
                severity=severity,
                code=code,
                diagnostics=diagnostics or None,
                expression=expression or None,
            )
        ]
    )


def capability_statement(
    *, base_url: str, software_version: str, now: datetime
) -> CapabilityStatement:
    """Build the CapabilityStatement of medcloud's FHIR server at `base_url`."""
    resources = [
        _resource(
            "Patient",
            [
                ("_id", "token", "Resource-id"),
                ("identifier", "token", "Patient-identifier"),
                ("name", "string", "Patient-name"),
            ],
            # Bulk Data Access IG: NDJSON of every patient's data, started at Patient/$export.
            operations=[
                ("export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export")
            ],
        ),
        _resource(
            "Device",
            [
                ("_id", "token", "Resource-id"),
                ("identifier", "token", "Device-identifier"),
                ("patient", "reference", "Device-patient"),
            ],
        ),
        _resource(
            "DeviceMetric",
            [("_id", "token", "Resource-id"), ("source", "reference", "DeviceMetric-source")],
        ),
        _resource(
            "Observation",
            [
                ("_id", "token", "Resource-id"),
                ("patient", "reference", "clinical-patient"),
                ("subject", "reference", "Observation-subject"),
                ("code", "token", "clinical-code"),
                ("date", "date", "clinical-date"),
                ("category", "token", "Observation-category"),
                ("device", "reference", "Observation-device"),
                # Result parameters rather than SearchParameters: listed so clients see them.
                ("_count", "number", None),
                ("_sort", "string", None),
            ],
            operations=[("lastn", "http://hl7.org/fhir/OperationDefinition/Observation-lastn")],
            profiles=[
                "vitalsigns",
                "heartrate",
                "oxygensat",
                "resprate",
                "bodytemp",
                "bp",
                "bodyweight",
            ],
        ),
    ]
    return CapabilityStatement(
        status="active",
        date=utc(now),
        kind="instance",
        software=CapabilityStatementSoftware(name="medcloud", version=software_version),
        implementation=CapabilityStatementImplementation(
            description="medcloud FHIR R4 API", url=base_url
        ),
        fhirVersion="4.0.1",
        # Interactions answer in JSON; NDJSON is only the output format of $export files (Bulk
        # Data IG), not a format of the REST API.
        format=["json", "application/fhir+json"],
        rest=[
            CapabilityStatementRest(
                mode="server",
                security=CapabilityStatementRestSecurity(
                    cors=True,
                    service=[
                        CodeableConcept(coding=[Coding(system=_SECURITY_SERVICE, code="OAuth")])
                    ],
                    description="OAuth 2.0 bearer tokens (Authorization: Bearer).",
                ),
                resource=resources,
            )
        ],
    )


def to_json(resource: Resource) -> dict[str, Any]:
    """Return `resource` as FHIR JSON (aliases, no empty elements)."""
    return resource.model_dump(mode="json", by_alias=True, exclude_none=True)


def ndjson(resources: Sequence[Resource]) -> bytes:
    """Return `resources` as newline-delimited JSON, one resource a line (Bulk Data IG)."""
    return b"".join(
        resource.model_dump_json(by_alias=True, exclude_none=True).encode() + b"\n"
        for resource in resources
    )


def _resource(
    type_name: str,
    search: list[tuple[str, str, str | None]],
    *,
    operations: list[tuple[str, str]] | None = None,
    profiles: list[str] | None = None,
) -> CapabilityStatementRestResource:
    return CapabilityStatementRestResource(
        type=type_name,
        profile=f"{_PROFILE}{type_name}",
        supportedProfile=[_PROFILE + name for name in profiles] if profiles else None,
        interaction=[
            CapabilityStatementRestResourceInteraction(code=code)
            for code in ("read", "search-type")
        ],
        versioning="no-version",
        readHistory=False,
        updateCreate=False,
        searchParam=[
            CapabilityStatementRestResourceSearchParam(
                name=name,
                type=kind,
                definition=_SEARCH_PARAMETER + definition if definition else None,
            )
            for name, kind, definition in search
        ],
        operation=[
            CapabilityStatementRestResourceOperation(name=name, definition=definition)
            for name, definition in operations or []
        ]
        or None,
    )


def _local_reference(resource: Resource) -> str:
    if resource.id is None:
        raise ValueError(f"a {resource.get_resource_type()} without an id has no URL")
    return f"{resource.get_resource_type()}/{resource.id}"
