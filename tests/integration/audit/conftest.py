"""The app with the audit context mounted, on either backend, and the named cast's tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from medcloud import bootstrap
from medcloud.config import AuditSettings, Settings
from medcloud.platform.security import Role, UserPrincipal
from tests.integration.audit.helpers import OTHER_ORG, ST_MARY
from tests.support.client import Api, running


@pytest.fixture
def audit_settings(settings: Settings) -> Settings:
    """A checkpoint every three entries, and no bootstrap admin, whose creation is audited too.

    The tests mint their tokens, and count on the log holding only the entries they record.
    """
    return settings.model_copy(
        update={"audit": AuditSettings(checkpoint_every=3), "bootstrap_admin_email": None}
    )


@pytest.fixture
async def api(audit_settings: Settings) -> AsyncIterator[Api]:
    async with running(audit_settings, contexts=list(bootstrap.ALL_CONTEXTS)) as client:
        yield client


def _token(api: Api, user_id: str, organisation_id: str, role: Role) -> str:
    token: str = api.app.state.runtime.tokens.issue(UserPrincipal(user_id, organisation_id, role))
    return token


@pytest.fixture
def carol_auditor(api: Api) -> str:
    """Carol audits St Mary's."""
    return _token(api, "u-carol", ST_MARY, Role.AUDITOR)


@pytest.fixture
def alice_admin(api: Api) -> str:
    """Alice administers St Mary's."""
    return _token(api, "u-alice", ST_MARY, Role.ADMIN)


@pytest.fixture
def bob_clinician(api: Api) -> str:
    """Bob treats St Mary's patients and has no business in the audit log."""
    return _token(api, "u-bob", ST_MARY, Role.CLINICIAN)


@pytest.fixture
def mallory_other_org(api: Api) -> str:
    """Mallory audits another organisation."""
    return _token(api, "u-mallory", OTHER_ORG, Role.AUDITOR)
