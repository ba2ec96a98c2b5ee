"""A deployment listening for HL7 v2 over MLLP, and messages as monitors send them."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from medcloud.config import MllpSettings, Settings
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.client import Api, bearer, eventually, running
from tests.support.mllp import listening
from tests.support.processes import free_port


@dataclass
class Hl7Deployment:
    """A running deployment, its admin's token and its MLLP port."""

    api: Api
    admin: str
    port: int


def listening_on(settings: Settings, **overrides: Any) -> Settings:
    """The deployment's settings, listening for MLLP on a port of its own."""
    return settings.model_copy(update={"mllp": MllpSettings(port=free_port(), **overrides)})


@contextlib.asynccontextmanager
async def deployed(settings: Settings) -> AsyncIterator[Hl7Deployment]:
    """Run the deployment until it listens and its local interface exists."""
    async with running(settings) as api:
        port = settings.mllp.port
        assert port is not None
        await listening(port)
        admin = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)

        async def interface_made() -> bool:
            found = await api.http.get("/api/v1/hl7/interfaces", headers=bearer(admin))
            return bool(found.json()["items"])

        assert await eventually(interface_made), "the local interface was never made"
        yield Hl7Deployment(api, admin, port)


@pytest.fixture
async def hl7(settings: Settings) -> AsyncIterator[Hl7Deployment]:
    """A deployment listening for MLLP, with the embedded default's local interface."""
    async with deployed(listening_on(settings)) as deployment:
        yield deployment


def hl7_time(at: dt.datetime) -> str:
    """An HL7 DTM with milliseconds and the offset, as monitors write them."""
    return at.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S.%f")[:-3] + "+0000"


def obx(
    n: int,
    code: str,
    sub: str,
    value: str,
    unit: str,
    *,
    time: str,
    equipment: str,
    status: str = "R",
) -> str:
    """One metric row: its IEEE 11073 code and REFID, containment position, value, MDC unit."""
    fields = ["OBX", str(n), "NM", f"{code}^MDC", sub, value, f"{unit}^MDC"]
    fields += ["", "", "", "", status, "", "", time, "", "", "", f"{equipment}^EUI-64"]
    return "|".join(fields)


SPO2 = "150456^MDC_PULS_OXIM_SAT_O2"
PULSE = "149530^MDC_PULS_OXIM_PULS_RATE"
SYSTOLIC = "150021^MDC_PRESS_BLD_NONINV_SYS"
DIASTOLIC = "150022^MDC_PRESS_BLD_NONINV_DIA"
MEAN = "150023^MDC_PRESS_BLD_NONINV_MEAN"
TEMPERATURE = "150364^MDC_TEMP_BODY"
RESPIRATION = "151562^MDC_RESP_RATE"
PERCENT, BPM, MMHG = "262688^MDC_DIM_PERCENT", "264864^MDC_DIM_BEAT_PER_MIN", "266016^MDC_DIM_MMHG"
FAHRENHEIT, BREATHS = "266560^MDC_DIM_FAHR", "264928^MDC_DIM_RESP_PER_MIN"


def vitals(time: str, equipment: str) -> list[str]:
    """A monitor's periodic vitals, with one value not available and one not obtained."""
    return [
        obx(2, SPO2, "1.1.1.1", "97", PERCENT, time=time, equipment=equipment),
        obx(3, PULSE, "1.1.1.2", "72", BPM, time=time, equipment=equipment),
        obx(4, SYSTOLIC, "1.1.2.1", "120", MMHG, time=time, equipment=equipment),
        obx(5, DIASTOLIC, "1.1.2.2", "80", MMHG, time=time, equipment=equipment),
        obx(6, TEMPERATURE, "1.1.3.1", "98.6", FAHRENHEIT, time=time, equipment=equipment),
        # IEEE 11073 NaN (value not available) and status X (not obtained): neither is a value.
        obx(7, RESPIRATION, "1.1.4.1", "8388607", BREATHS, time=time, equipment=equipment),
        obx(8, MEAN, "1.1.2.3", "", MMHG, time=time, equipment=equipment, status="X"),
    ]


def oru(
    control_id: str,
    *,
    at: dt.datetime,
    mrn: str = "MRN-7001",
    equipment: str = "0080AAFFFE000001",
    rows: list[str] | None = None,
    name: str = "DOE^JANE",
    birth: str = "19580312",
) -> str:
    """A PCD-01 ORU^R01 in the shape bedside monitors send: the containment tree's MDS row,
    then metrics, each naming its equipment."""
    time = hl7_time(at)
    profile = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
    msh = [
        "MSH",
        "^~\\&",
        "GATEWAY^0080AAFFFE00FFFF^EUI-64",
        "WARD7",
        "MEDCLOUD",
        "HOSP",
        time,
        "",
        "ORU^R01^ORU_R01",
        control_id,
        "P",
        "2.6",
        "",
        "",
        "NE",
        "AL",
        "",
        "UNICODE UTF-8",
        "",
        "",
        profile,
    ]
    mds = "69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC"
    return "\r".join(
        [
            "|".join(msh),
            f"PID|||{mrn}^^^HOSP^MR||{name}^^^^^L||{birth}|F",
            "PV1||I|WARD7^12^1",
            f"OBR|1|{control_id}^GATEWAY|{control_id}^GATEWAY|182777000^monitoring^SNOMED-CT"
            f"|||{time}",
            f"OBX|1||{mds}|1.0.0.0|||||||X|||||||{equipment}^EUI-64",
            *(rows if rows is not None else vitals(time, equipment)),
        ]
    )
