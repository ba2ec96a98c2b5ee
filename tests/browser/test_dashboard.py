"""The dashboard in a real browser against a real server: signing in, live data, alarms,
reports, and every page free of serious accessibility faults at tablet and desktop width."""

from __future__ import annotations

import time

import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import CAROL, DESKTOP, SCREENSHOTS, TABLET, Site, sign_in
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.cast import PASSWORD

LIVE_WITHIN_MS = 2_000


def accessible(page: Page, name: str) -> None:
    """Assert axe-core finds nothing serious or critical; save the page at both widths."""
    for width, suffix in ((TABLET, "-tablet"), (DESKTOP, "")):
        page.set_viewport_size(width)  # type: ignore[arg-type]
        results = Axe().run(page)
        serious = [
            f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert serious == [], f"{name}{suffix}: {serious}"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}{suffix}.png"), full_page=True)


def test_signing_in_leads_to_the_ward_overview(site: Site, context: BrowserContext) -> None:
    page = context.new_page()
    page.goto(f"{site.base}/patients/{site.patient['id']}")
    expect(page).to_have_url(f"{site.base}/sign-in?next=/patients/{site.patient['id']}")
    accessible(page, "sign-in")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # focus is visible
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()

    sign_in(page, site, CAROL, PASSWORD)

    expect(page.get_by_role("heading", name="Ward overview")).to_be_visible()
    expect(page.get_by_role("link", name="Parker, Peter")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{site.base}/sign-in")


def test_a_live_reading_reaches_the_patient_chart_within_two_seconds(
    site: Site, context: BrowserContext
) -> None:
    site.send(heart_rate=72, spo2=97)
    page = context.new_page()
    sign_in(page, site, CAROL, PASSWORD)
    page.goto(f"{site.base}/patients/{site.patient['id']}")
    expect(page.locator("#live-status")).to_have_text("Live.")
    chart = page.locator("#chart-heart_rate")
    expect(chart.locator("canvas")).to_be_visible()

    site.send(heart_rate=88, spo2=96)
    sent = time.monotonic()

    expect(chart).to_have_attribute("data-last-live", "88", timeout=LIVE_WITHIN_MS)
    assert time.monotonic() - sent < LIVE_WITHIN_MS / 1000
    expect(page.locator('[data-latest="heart_rate"]')).to_have_text("88")
    accessible(page, "patient")


def test_an_alarm_appears_on_the_ward_overview_and_is_acknowledged_there(
    site: Site, context: BrowserContext
) -> None:
    page = context.new_page()
    sign_in(page, site, CAROL, PASSWORD)
    expect(page.get_by_text("0 high")).to_be_visible()

    site.send(heart_rate=190)

    # Arrives over the alarm stream, without reloading the page.
    acknowledge = page.get_by_role("button", name="Acknowledge", exact=False).first
    expect(acknowledge).to_be_visible(timeout=10_000)
    expect(page.get_by_text("1 high")).to_be_visible()
    accessible(page, "ward")
    acknowledge.click()

    expect(page.get_by_text("0 high")).to_be_visible()
    alerts = site.get("/api/v1/alerts", site.carol, patient_id=site.patient["id"]).json()
    assert {a["state"] for a in alerts["items"]} >= {"acknowledged"}


@pytest.mark.parametrize("name", ["alarms", "devices", "reports", "audit"])
def test_every_other_page_is_accessible(site: Site, context: BrowserContext, name: str) -> None:
    page = context.new_page()
    # The admin sees every page, the audit log and the firmware campaigns included.
    sign_in(page, site, ADMIN_EMAIL, ADMIN_PASSWORD)

    page.goto(f"{site.base}/{name}")
    if name == "audit":
        page.get_by_role("button", name="Verify the hash chain").click()
        expect(page.get_by_text("Chain intact")).to_be_visible()

    expect(page.locator("h1")).to_be_visible()
    accessible(page, name)


def test_a_report_is_generated_and_downloaded(site: Site, context: BrowserContext) -> None:
    page = context.new_page()
    sign_in(page, site, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.goto(f"{site.base}/reports")

    page.get_by_label("Scope").select_option("organisation")
    page.get_by_role("button", name="Generate").click()

    link = page.get_by_role("link", name="PDF", exact=False).first
    expect(link).to_be_visible(timeout=15_000)
    accessible(page, "reports")
    with page.expect_download() as download:
        link.click()
    path = download.value.path()
    assert path.read_bytes().startswith(b"%PDF")
