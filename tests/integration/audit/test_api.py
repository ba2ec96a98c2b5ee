"""Reading the audit log over HTTP: who may, what they see, and how it pages and exports."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import stat

import orjson
from sqlalchemy import func, select

from medcloud.audit.keys import KEY_FILE
from medcloud.audit.models import AuditCheckpoint, AuditHead
from medcloud.platform.audit import Outcome
from medcloud.platform.models import ProcessedEvent
from tests.integration.audit.helpers import (
    OTHER_ORG,
    T0,
    count_entries,
    fact,
    record,
    record_and_wait,
    runtime,
    wait_for_entries,
)
from tests.support.client import Api, bearer, eventually


async def listing(api: Api, token: str, **params: str | int) -> list[dict[str, object]]:
    response = await api.http.get("/api/v1/audit", params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    items: list[dict[str, object]] = response.json()["items"]
    return items


async def test_an_auditor_lists_their_organisations_entries_newest_first(
    api: Api, carol_auditor: str
) -> None:
    await record_and_wait(api, 3)
    items = await listing(api, carol_auditor)
    assert [item["object_id"] for item in items] == ["device-3", "device-2", "device-1"]
    first = items[-1]
    assert first["position"] in (1, 2, 3)
    assert first["actor_type"] == "user" and first["actor_id"] == "u-alice"
    assert first["action"] == "readings.read" and first["outcome"] == "success"
    assert first["patient_id"] == "patient-7" and first["detail"] == {"count": 1}
    assert first["occurred_at"] == "2026-03-01T08:01:00Z"
    assert len(str(first["hash"])) == 64 and len(str(first["prev_hash"])) == 64


async def test_an_admin_may_read_and_verify_the_log(api: Api, alice_admin: str) -> None:
    await record_and_wait(api, 1)
    assert len(await listing(api, alice_admin)) == 1
    response = await api.http.get("/api/v1/audit/verify", headers=bearer(alice_admin))
    assert response.status_code == 200 and response.json()["ok"] is True


async def test_a_clinician_may_neither_read_nor_verify_the_log(
    api: Api, bob_clinician: str
) -> None:
    for path in ("/api/v1/audit", "/api/v1/audit/verify", "/api/v1/audit?format=csv"):
        response = await api.http.get(path, headers=bearer(bob_clinician))
        assert response.status_code == 403, path
        assert response.headers["content-type"] == "application/problem+json"


async def test_no_token_is_unauthorized(api: Api) -> None:
    for path in ("/api/v1/audit", "/api/v1/audit/verify"):
        response = await api.http.get(path)
        assert response.status_code == 401, path


async def test_entries_of_another_organisation_are_never_listed_nor_exported(
    api: Api, carol_auditor: str, mallory_other_org: str
) -> None:
    await record(api, fact(1), fact(2), fact(3, organisation_id=OTHER_ORG, actor_id="u-eve"))
    await wait_for_entries(api, 3)
    assert [item["actor_id"] for item in await listing(api, mallory_other_org)] == ["u-eve"]
    assert await listing(api, mallory_other_org, patient_id="patient-7", actor_id="u-alice") == []
    assert len(await listing(api, carol_auditor)) == 2
    export = await api.http.get(
        "/api/v1/audit", params={"format": "ndjson"}, headers=bearer(mallory_other_org)
    )
    lines = export.content.splitlines()
    assert [orjson.loads(line)["actor_id"] for line in lines] == ["u-eve"]


async def test_filters_narrow_the_listing(api: Api, carol_auditor: str) -> None:
    await record(
        api,
        fact(1),
        fact(2, actor_id="u-dave", patient_id="patient-9"),
        fact(3, action="auth.login", outcome=Outcome.FAILURE, patient_id=None),
        fact(4, outcome=Outcome.DENIED),
    )
    await wait_for_entries(api, 4)

    async def ids(**params: str | int) -> list[object]:
        return [item["object_id"] for item in await listing(api, carol_auditor, **params)]

    assert await ids(actor_id="u-dave") == ["device-2"]
    assert await ids(patient_id="patient-7") == ["device-4", "device-1"]
    assert await ids(action="auth.login") == ["device-3"]
    assert await ids(outcome="denied") == ["device-4"]
    start, end = T0 + dt.timedelta(minutes=2), T0 + dt.timedelta(minutes=4)
    assert await ids(start=start.isoformat(), end=end.isoformat()) == ["device-3", "device-2"]
    response = await api.http.get(
        "/api/v1/audit", params={"start": "2026-03-01T08:00:00"}, headers=bearer(carol_auditor)
    )
    assert response.status_code == 422  # a time without a zone is ambiguous


async def test_paging_returns_every_entry_once(api: Api, carol_auditor: str) -> None:
    # Two entries share each instant, so the position must break ties.
    await record(
        api, *(fact(i, occurred_at=T0 + dt.timedelta(minutes=i // 2)) for i in range(1, 12))
    )
    await wait_for_entries(api, 11)
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (
            await api.http.get("/api/v1/audit", params=params, headers=bearer(carol_auditor))
        ).json()
        seen += [item["position"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == list(range(1, 12))


async def test_a_foreign_cursor_is_refused(api: Api, carol_auditor: str) -> None:
    for cursor in ("bm90IGEgY3Vyc29y", "MjAyNi0wMy0wMVQwODowMDowMCswMDowMHxub3QtYS1udW1iZXI="):
        response = await api.http.get(
            "/api/v1/audit", params={"cursor": cursor}, headers=bearer(carol_auditor)
        )
        assert response.status_code == 422, cursor
        assert response.json()["errors"][0]["field"] == "query.cursor"


async def test_a_csv_export_streams_every_match_as_an_attachment(
    api: Api, carol_auditor: str
) -> None:
    await record(api, *(fact(i) for i in range(1, 6)), fact(6, action="auth.login"))
    await wait_for_entries(api, 6)
    response = await api.http.get(
        "/api/v1/audit",
        params={"format": "csv", "action": "readings.read", "limit": 1},
        headers=bearer(carol_auditor),
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="audit-') and disposition.endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["object_id"] for row in rows] == [f"device-{i}" for i in range(5, 0, -1)]
    assert rows[-1]["occurred_at"] == "2026-03-01T08:01:00.000000Z"
    assert orjson.loads(rows[-1]["detail"]) == {"count": 1}
    assert rows[-1]["request_id"] == "req-1" and len(rows[-1]["hash"]) == 64


async def test_an_ndjson_export_has_one_entry_per_line(api: Api, carol_auditor: str) -> None:
    await record_and_wait(api, 4)
    response = await api.http.get(
        "/api/v1/audit", params={"format": "ndjson"}, headers=bearer(carol_auditor)
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["content-disposition"].endswith('.ndjson"')
    entries = [orjson.loads(line) for line in response.content.splitlines()]
    # The export records itself (next test); that entry may be chained before the stream reads.
    recorded = [entry for entry in entries if entry["action"] == "readings.read"]
    assert [entry["detail"]["count"] for entry in recorded] == [4, 3, 2, 1]
    assert len(entries) - len(recorded) <= 1
    assert {entry["organisation_id"] for entry in entries} == {"org-stmary"}


async def test_an_export_is_itself_recorded_in_the_log(api: Api, carol_auditor: str) -> None:
    await record_and_wait(api, 1)
    await api.http.get(
        "/api/v1/audit",
        params={"format": "csv", "patient_id": "patient-7"},
        headers=bearer(carol_auditor),
    )

    async def exports() -> list[dict[str, object]]:
        return await listing(api, carol_auditor, action="audit.export")

    (entry,) = await eventually(exports)
    assert entry["actor_id"] == "u-carol" and entry["patient_id"] == "patient-7"
    assert entry["detail"] == {"format": "csv"} and entry["request_id"]


async def test_a_fact_delivered_twice_is_chained_once(api: Api) -> None:
    await record(api, fact(1))
    await record(api, fact(1), fact(2))

    async def all_three_deliveries_handled() -> bool:
        async with runtime(api).read_sessions() as session:
            handled = await session.scalar(
                select(func.count())
                .select_from(ProcessedEvent)
                .where(ProcessedEvent.consumer == "audit.append_audit_entry")
            )
        return handled == 3

    assert await eventually(all_three_deliveries_handled)
    assert await count_entries(api) == 2


async def test_checkpoints_every_few_entries_and_a_head_on_the_last(api: Api) -> None:
    await record_and_wait(api, 7)
    async with runtime(api).read_sessions() as session:
        checkpoints = (await session.scalars(select(AuditCheckpoint))).all()
        head = await session.scalar(select(AuditHead))
    assert [checkpoint.position for checkpoint in checkpoints] == [3, 6]
    assert head is not None and head.position == 7 and head.key_id == checkpoints[0].key_id


async def test_the_generated_signing_key_is_readable_by_its_owner_only(api: Api) -> None:
    path = runtime(api).settings.var_dir / KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
