"""HTTP routes of the FHIR R4 read API at /fhir/r4, and how its errors are written.

Routes parse the search (`fhir_search`, strict: an unknown parameter is a 400), call one use
case (`fhir_queries`, `fhir_export`) and answer `application/fhir+json`. Errors under /fhir/
are OperationOutcomes: the kernel's one error mapping writes them with `operation_outcome_body`,
which this context hands it (`Context.error_formats`), so refusals are audited the same way as
everywhere else and the kernel imports nothing of FHIR.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from fhir.resources.R4B.capabilitystatement import (
    CapabilityStatement,
    CapabilityStatementRestResource,
    CapabilityStatementRestResourceOperation,
)

from medcloud import __version__
from medcloud.interop import fhir, fhir_export, fhir_queries, fhir_search
from medcloud.interop.fhir_access import Sources
from medcloud.interop.fhir_search import SearchUrls
from medcloud.interop.fhir_server import IssueType
from medcloud.platform.errors import FieldError
from medcloud.platform.http import Authorize, RuntimeDep, UowDep
from medcloud.platform.policy import Action
from medcloud.platform.security import UserPrincipal

FHIR_JSON = "application/fhir+json"
BASE_PATH = "/fhir/r4"

PatientReader = Annotated[UserPrincipal, Authorize(Action.PATIENT_READ)]
DeviceReader = Annotated[UserPrincipal, Authorize(Action.DEVICE_READ)]
ReadingsReader = Annotated[UserPrincipal, Authorize(Action.READINGS_READ)]

# R4 IssueType for each status an error can have (http.html, "Error codes").
_ISSUE_TYPES: dict[int, IssueType] = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    413: "too-long",
    422: "processing",
    429: "throttled",
    503: "transient",
}
# Searches read their parameters themselves, strictly (FHIR lists them in /metadata).
_SEARCH: dict[int | str, dict[str, Any]] = {
    400: {"description": "A search parameter is unknown, malformed or missing."}
}
_SYNCHRONOUS_EXPORT = (
    "Synchronous: GET {path}/$export answers application/fhir+ndjson at once, not 202 and a "
    "status URL; _type (Patient, Device, Observation) and _since are supported."
)


class FhirJson(Response):
    """A FHIR resource as `application/fhir+json`."""

    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(fhir.to_json(content))


async def get_sources(runtime: RuntimeDep) -> Sources:
    """Return the published interfaces the FHIR API reads through."""
    return Sources(
        patients=runtime.patients,
        devices=runtime.devices,
        readings=runtime.readings,
        care=runtime.care,
    )


SourcesDep = Annotated[Sources, Depends(get_sources)]

router = APIRouter(prefix=BASE_PATH, tags=["fhir"], default_response_class=FhirJson)


def operation_outcome_body(
    status: int, slug: str, detail: str, errors: Sequence[FieldError]
) -> tuple[bytes, str]:
    """Write an error as a FHIR OperationOutcome (the kernel calls this for /fhir/ paths)."""
    del slug  # the issue type says it in FHIR's words
    named = [f"{e.field}: {e.message}" for e in errors if e.field.rsplit(".", 1)[-1] not in detail]
    outcome = fhir.operation_outcome(
        severity="fatal" if status >= 500 else "error",
        code=_ISSUE_TYPES.get(status, "exception" if status >= 500 else "processing"),
        diagnostics="; ".join([detail, *named]),
    )
    return orjson.dumps(fhir.to_json(outcome)), FHIR_JSON


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + BASE_PATH


def _urls(request: Request, resource_type: str) -> SearchUrls:
    return SearchUrls(_base_url(request), resource_type, tuple(request.query_params.multi_items()))


def _params(request: Request) -> list[tuple[str, str]]:
    return request.query_params.multi_items()


@router.get("/metadata")
async def metadata(request: Request, runtime: RuntimeDep) -> FhirJson:
    """Describe this FHIR server: resources, search parameters, operations (public)."""
    return FhirJson(capabilities(_base_url(request), runtime.clock.now()))


def capabilities(base_url: str, now: dt.datetime) -> CapabilityStatement:
    """The mapping's CapabilityStatement, with how this server exports."""
    statement = fhir.capability_statement(base_url=base_url, software_version=__version__, now=now)
    rest = (statement.rest or [])[0]
    for resource in rest.resource or []:
        if resource.type == "Patient":
            for operation in resource.operation or []:
                if operation.name == "export":
                    operation.documentation = _SYNCHRONOUS_EXPORT.format(path="Patient/[id]")
    rest.resource = [
        *(rest.resource or []),
        CapabilityStatementRestResource(
            type="Group",
            operation=[
                CapabilityStatementRestResourceOperation(
                    name="export",
                    definition="http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
                    documentation=_SYNCHRONOUS_EXPORT.format(path="Group/[ward id]")
                    + " A Group is a ward's care team.",
                )
            ],
        ),
    ]
    return statement


@router.get("/Patient", responses=_SEARCH)
async def search_patients(
    request: Request, uow: UowDep, sources: SourcesDep, principal: PatientReader
) -> FhirJson:
    """Search the patients in the user's care scope by _id, identifier or name."""
    search = fhir_search.patient_search(_params(request))
    return FhirJson(
        await fhir_queries.search_patients(
            uow=uow,
            sources=sources,
            principal=principal,
            search=search,
            urls=_urls(request, "Patient"),
        )
    )


@router.get("/Patient/{patient_id}")
async def read_patient(
    patient_id: str, uow: UowDep, sources: SourcesDep, principal: PatientReader
) -> FhirJson:
    """Read a patient in the user's care scope."""
    return FhirJson(
        await fhir_queries.read_patient(
            uow=uow, sources=sources, principal=principal, patient_id=patient_id
        )
    )


@router.get("/Patient/{patient_id}/$export", response_class=StreamingResponse, responses=_SEARCH)
async def export_patient(
    request: Request,
    patient_id: str,
    runtime: RuntimeDep,
    sources: SourcesDep,
    principal: ReadingsReader,
) -> StreamingResponse:
    """Export one patient's Patient, Device and Observation resources as NDJSON, at once."""
    lines = await fhir_export.export_patient(
        uow_factory=runtime.uow,
        sources=sources,
        principal=principal,
        patient_id=patient_id,
        export=fhir_search.export(_params(request)),
    )
    return StreamingResponse(lines, media_type=fhir_export.NDJSON)


@router.get("/Group/{ward_id}/$export", response_class=StreamingResponse, responses=_SEARCH)
async def export_ward(
    request: Request,
    ward_id: str,
    runtime: RuntimeDep,
    sources: SourcesDep,
    principal: ReadingsReader,
) -> StreamingResponse:
    """Export the patients of a ward (its care team) as NDJSON, at once."""
    lines = await fhir_export.export_ward(
        uow_factory=runtime.uow,
        sources=sources,
        principal=principal,
        ward_id=ward_id,
        export=fhir_search.export(_params(request)),
    )
    return StreamingResponse(lines, media_type=fhir_export.NDJSON)


@router.get("/Device", responses=_SEARCH)
async def search_devices(
    request: Request, uow: UowDep, sources: SourcesDep, principal: DeviceReader
) -> FhirJson:
    """Search the devices the user may see by _id, patient or identifier (serial number)."""
    search = fhir_search.device_search(_params(request))
    return FhirJson(
        await fhir_queries.search_devices(
            uow=uow,
            sources=sources,
            principal=principal,
            search=search,
            urls=_urls(request, "Device"),
        )
    )


@router.get("/Device/{device_id}")
async def read_device(
    device_id: str, uow: UowDep, sources: SourcesDep, principal: DeviceReader
) -> FhirJson:
    """Read a device the user may see."""
    return FhirJson(
        await fhir_queries.read_device(
            uow=uow, sources=sources, principal=principal, device_id=device_id
        )
    )


@router.get("/DeviceMetric", responses=_SEARCH)
async def search_metrics(
    request: Request, uow: UowDep, sources: SourcesDep, principal: DeviceReader
) -> FhirJson:
    """List what a device measures (source=Device/{id}), one DeviceMetric per type."""
    search = fhir_search.metric_search(_params(request))
    return FhirJson(
        await fhir_queries.search_metrics(
            uow=uow,
            sources=sources,
            principal=principal,
            search=search,
            urls=_urls(request, "DeviceMetric"),
        )
    )


@router.get("/DeviceMetric/{metric_id}")
async def read_metric(
    metric_id: str, uow: UowDep, sources: SourcesDep, principal: DeviceReader
) -> FhirJson:
    """Read what a device measures of one type."""
    return FhirJson(
        await fhir_queries.read_metric(
            uow=uow, sources=sources, principal=principal, metric_id=metric_id
        )
    )


@router.get("/Observation", responses=_SEARCH)
async def search_observations(
    request: Request, uow: UowDep, sources: SourcesDep, principal: ReadingsReader
) -> FhirJson:
    """Search a patient's (or a device's) observations by code, category and date."""
    search = fhir_search.observation_search(_params(request))
    return FhirJson(
        await fhir_queries.search_observations(
            uow=uow,
            sources=sources,
            principal=principal,
            search=search,
            urls=_urls(request, "Observation"),
        )
    )


# Before Observation/{id}, which would take "$lastn" for an id.
@router.get("/Observation/$lastn", responses=_SEARCH)
async def last_observations(
    request: Request, uow: UowDep, sources: SourcesDep, principal: ReadingsReader
) -> FhirJson:
    """Return a patient's newest observations of each code (Observation-lastn)."""
    search = fhir_search.lastn(_params(request))
    return FhirJson(
        await fhir_queries.last_observations(
            uow=uow,
            sources=sources,
            principal=principal,
            search=search,
            urls=_urls(request, "Observation/$lastn"),
        )
    )


@router.get("/Observation/{observation_id}")
async def read_observation(
    observation_id: str, uow: UowDep, sources: SourcesDep, principal: ReadingsReader
) -> FhirJson:
    """Read one observation of a patient in the user's care scope."""
    return FhirJson(
        await fhir_queries.read_observation(
            uow=uow, sources=sources, principal=principal, observation_id=observation_id
        )
    )
