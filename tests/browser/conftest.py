"""One real medcloud server per module, seeded through its API, and Debian's Chromium to drive it.

The browser is the system's (`/usr/bin/chromium`), never one Playwright downloads. Without it
the tests are skipped on a workstation and fail under CI (`CI=true`), where it must be there.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from medcloud.config import IdentitySettings, RateLimitSettings, Settings
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, RELAXED_LIMITS
from tests.support.cast import PASSWORD
from tests.support.processes import free_port, medcloud, settings_env

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(
    os.environ.get("MEDCLOUD_SCREENSHOTS") or Path(tempfile.gettempdir()) / "medcloud-screenshots"
)
"""Where the accessibility tests save each page they checked: a temporary directory, so a test
run leaves the checkout as it found it; `make screenshots` refreshes docs/screenshots."""
TABLET = {"width": 768, "height": 1024}
DESKTOP = {"width": 1280, "height": 900}
CAROL = "carol_clinician@stmary.example"
"""A clinician of the Cardiology ward, where Peter lies."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.e2e)


@dataclass
class Site:
    """A running medcloud with one ward, a clinician, a patient and his oximeter."""

    base: str
    admin: str
    carol: str
    patient: dict[str, Any]
    device: dict[str, Any]
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def send(self, **measurements: float) -> None:
        """Post one reading as Peter's oximeter, measured now."""
        response = httpx.post(
            f"{self.base}/api/v1/devices/{self.device['id']}/data",
            json={"timestamp": dt.datetime.now(dt.UTC).isoformat(), "measurements": measurements},
            headers={"Authorization": f"Bearer {self.device['token']}"},
        )
        assert response.status_code == 201, response.text

    def get(self, path: str, token: str, **params: Any) -> httpx.Response:
        return httpx.get(
            f"{self.base}{path}", params=params, headers={"Authorization": f"Bearer {token}"}
        )


def _wait_ready(base: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"medcloud did not become ready:\n{log.read_text()[-3000:]}")


def _seed(base: str) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    with httpx.Client(base_url=base, timeout=30) as http:

        def token(email: str, password: str) -> str:
            answer = http.post("/api/v1/auth/token", data={"username": email, "password": password})
            assert answer.status_code == 200, answer.text
            return str(answer.json()["access_token"])

        admin = token(ADMIN_EMAIL, ADMIN_PASSWORD)
        auth = {"Authorization": f"Bearer {admin}"}
        ward = http.post("/api/v1/wards", json={"name": "Cardiology"}, headers=auth).json()["id"]
        invited = http.post(
            "/api/v1/users",
            json={"email": CAROL, "role": "clinician", "ward_ids": [ward]},
            headers=auth,
        )
        assert invited.status_code == 201, invited.text
        accepted = http.post(
            "/api/v1/auth/invitations/accept",
            json={"token": invited.json()["invitation_token"], "password": PASSWORD},
        )
        assert accepted.status_code in (200, 201, 204), accepted.text
        patient = http.post(
            "/api/v1/patients",
            json={
                "identifier_system": "urn:oid:2.16.840.1.113883.2.1.4.1",
                "identifier_value": "P-1001",
                "family_name": "Parker",
                "given_name": "Peter",
                "birth_date": "1950-04-01",
                "ward_id": ward,
            },
            headers=auth,
        )
        assert patient.status_code == 201, patient.text
        device = http.post(
            "/api/v1/devices",
            json={
                "serial_number": "PO-1",
                "model": "PulseOx 2",
                "manufacturer": "Acme Medical",
                "patient_id": patient.json()["id"],
            },
            headers=auth,
        )
        assert device.status_code == 201, device.text
        return admin, token(CAROL, PASSWORD), patient.json(), device.json()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """medcloud serving on a free port, on its embedded SQLite, seeded through the API."""
    tmp = tmp_path_factory.mktemp("browser")
    settings = Settings(
        var_dir=tmp / "var",
        rate_limits=RateLimitSettings(
            default=RELAXED_LIMITS, ingest=RELAXED_LIMITS, anonymous=RELAXED_LIMITS
        ),
        identity=IdentitySettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1),
    )
    env = settings_env(
        settings,
        MEDCLOUD_BOOTSTRAP_ADMIN_EMAIL=ADMIN_EMAIL,
        MEDCLOUD_BOOTSTRAP_ADMIN_PASSWORD=ADMIN_PASSWORD,
        MEDCLOUD_IDENTITY__ARGON2_TIME_COST="1",
        MEDCLOUD_IDENTITY__ARGON2_MEMORY_KIB="1024",
        MEDCLOUD_IDENTITY__ARGON2_PARALLELISM="1",
    )
    port = free_port()
    log = tmp / "serve.log"
    with medcloud("serve", "--port", str(port), env=env, log=log):
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, log)
        admin, carol, patient, device = _seed(base)
        yield Site(base, admin, carol, patient, device, log)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless."""
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (make tools)")
        pytest.skip(f"{CHROMIUM} is not installed")
    with sync_playwright() as playwright:
        # No sandbox: CI containers run as root, where Chromium's sandbox cannot start.
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) at desktop width."""
    fresh = browser.new_context(viewport=DESKTOP, accept_downloads=True)  # type: ignore[arg-type]
    try:
        yield fresh
    finally:
        fresh.close()


def sign_in(page: Page, site: Site, email: str, password: str) -> None:
    """Sign in through the form, as a person would."""
    page.goto(f"{site.base}/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{site.base}/")
