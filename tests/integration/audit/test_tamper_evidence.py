"""Tampering with the stored log, on each backend, is named at its position by every verifier."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from medcloud import bootstrap
from medcloud.audit.chain import compute_hash
from medcloud.audit.cli import audit_app
from medcloud.audit.repository import entries_after
from medcloud.config import Settings
from tests.integration.audit.helpers import (
    fact,
    record,
    record_and_wait,
    runtime,
    tamper,
    verify,
    wait_for_entries,
)
from tests.support.client import Api, bearer, running

# Seven entries with a checkpoint every three: checkpoints seal 3 and 6, the head seals 7.
ENTRIES = 7

TAMPERING = {
    "an edited entry": (["UPDATE audit_entry SET action = 'readings.none' WHERE position = 4"], 4),
    "an edited nullable field": (
        ["UPDATE audit_entry SET patient_id = NULL, outcome = 'denied' WHERE position = 2"],
        2,
    ),
    "an edited timestamp": (
        ["UPDATE audit_entry SET recorded_at = occurred_at WHERE position = 6"],
        6,
    ),
    "a deleted entry": (["DELETE FROM audit_entry WHERE position = 4"], 4),
    "two swapped entries": (
        [
            "UPDATE audit_entry SET position = -4 WHERE position = 4",
            "UPDATE audit_entry SET position = 4 WHERE position = 5",
            "UPDATE audit_entry SET position = 5 WHERE position = -4",
        ],
        4,
    ),
    "a tail cut before a checkpoint": (["DELETE FROM audit_entry WHERE position >= 5"], 5),
    "a tail cut after the last checkpoint": (["DELETE FROM audit_entry WHERE position >= 7"], 7),
    "a tail cut with its checkpoints": (
        [
            "DELETE FROM audit_entry WHERE position >= 5",
            "DELETE FROM audit_checkpoint WHERE position >= 5",
        ],
        5,
    ),
    "a removed head": (["DELETE FROM audit_head"], 7),
}


async def test_an_untouched_log_verifies(api: Api, carol_auditor: str) -> None:
    await record_and_wait(api, ENTRIES)
    result = await verify(api)
    assert (result.ok, result.entries_checked, result.first_bad_position) == (True, ENTRIES, None)
    response = await api.http.get("/api/v1/audit/verify", headers=bearer(carol_auditor))
    assert response.status_code == 200
    assert response.json() == {
        "ok": True,
        "entries_checked": ENTRIES,
        "first_bad_position": None,
        "reason": None,
    }


@pytest.mark.parametrize("case", list(TAMPERING))
async def test_tampering_is_named_at_its_first_bad_position(
    api: Api, carol_auditor: str, case: str
) -> None:
    statements, expected = TAMPERING[case]
    await record_and_wait(api, ENTRIES)
    await tamper(api, *statements)

    result = await verify(api)
    assert (result.ok, result.first_bad_position) == (False, expected), result.reason
    assert result.entries_checked < ENTRIES

    response = await api.http.get("/api/v1/audit/verify", headers=bearer(carol_auditor))
    assert response.status_code == 200
    body = response.json()
    assert (body["ok"], body["first_bad_position"]) == (False, expected)
    assert body["reason"] == result.reason


async def test_an_entry_rewritten_with_a_recomputed_hash_is_still_named(
    api: Api, carol_auditor: str
) -> None:
    await record_and_wait(api, ENTRIES)
    async with runtime(api).read_sessions() as session:
        fourth = (await entries_after(session, 3, limit=1))[0]
    forged = dataclasses.replace(fourth.record, outcome="denied")
    new_hash = compute_hash(fourth.prev_hash, 4, forged)
    await tamper(
        api,
        "UPDATE audit_entry SET outcome = 'denied', hash = :hash WHERE position = 4",
        params={"hash": new_hash},
    )
    result = await verify(api)
    assert (result.ok, result.first_bad_position) == (False, 4)
    assert result.reason is not None and "rewritten" in result.reason


async def test_the_database_refuses_to_change_or_remove_an_entry(api: Api) -> None:
    await record_and_wait(api, 3)
    engine = runtime(api).database.writer
    for statement in (
        "UPDATE audit_entry SET action = 'x' WHERE position = 1",
        "DELETE FROM audit_entry WHERE position = 2",
        "DELETE FROM audit_checkpoint",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as connection:
                await connection.execute(text(statement))
    assert (await verify(api)).ok


async def test_appending_after_a_cut_tail_keeps_the_gap_visible(api: Api) -> None:
    await record_and_wait(api, 5)
    await tamper(api, "DELETE FROM audit_entry WHERE position >= 4")
    await record(api, fact(100))
    await wait_for_entries(api, 4)
    result = await verify(api)
    assert (result.ok, result.first_bad_position) == (False, 4)


def _verify_with_cli(settings: Settings) -> Any:
    env = {
        "MEDCLOUD_VAR_DIR": str(settings.var_dir),
        "MEDCLOUD_DATABASE_URL": settings.database_url,
    }
    return CliRunner().invoke(audit_app, ["verify"], env=env)


async def test_the_cli_exits_0_on_an_intact_log_and_1_naming_the_position_on_a_broken_one(
    audit_settings: Settings,
) -> None:
    contexts = list(bootstrap.ALL_CONTEXTS)
    async with running(audit_settings, contexts=contexts) as api:
        await record_and_wait(api, ENTRIES)

    intact = await asyncio.to_thread(_verify_with_cli, audit_settings)
    assert intact.exit_code == 0, intact.output
    assert f"{ENTRIES} entries verified" in intact.output

    async with running(audit_settings, contexts=contexts) as api:
        await tamper(api, "DELETE FROM audit_entry WHERE position = 3")

    broken = await asyncio.to_thread(_verify_with_cli, audit_settings)
    assert broken.exit_code == 1, broken.output
    assert "broken at position 3" in broken.output
