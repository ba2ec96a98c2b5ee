"""Interoperability: what hospitals' systems speak, read and written at the edge.

Bedside monitors and their gateways send HL7 v2 (IHE PCD-01 ORU^R01, ADT) over MLLP; EHRs read
FHIR R4. The segments and resources are parsed and built here, with their libraries, and
nowhere else: the rest of medcloud sees typed readings and patients.
"""

from __future__ import annotations

from pathlib import Path

from medcloud.interop.api import router
from medcloud.interop.fhir_api import operation_outcome_body
from medcloud.interop.handlers import SUBSCRIPTIONS
from medcloud.interop.hooks import forget_answered, listen_mllp
from medcloud.platform.context import Context

CONTEXT = Context(
    name="interop",
    router=router,
    subscriptions=SUBSCRIPTIONS,
    migrations=Path(__file__).parent / "migrations",
    background=(listen_mllp,),
    singletons=(forget_answered,),
    error_formats={"/fhir/": operation_outcome_body},
)
