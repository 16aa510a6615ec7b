"""The workflow pages on a phone (390×844): no horizontal overflow, a screenshot of each; every visible form control
has an accessible name, and the configuration tabs and wizard work from the keyboard."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .conftest import LiveUi, csrf_headers, first_admin, needs_chromium

pytestmark = needs_chromium
PHONE = {"width": 390, "height": 844}
#: Page → an element that shows once its script has filled it in.
PAGES = {
    "/": "main h1", "/training": "#history", "/config": "#opt-lora_rank", "/datasets": "#ds-id",
    "/environments": "#env-table tbody tr", "/wizard": "#families label", "/onboarding": "#example-choices label",
    "/plugins": "main table", "/profile": "main h1",
}
CONTROLS = "input:not([type=hidden]), select, textarea"
#: Lists what sticks out on the right, to say which element breaks the layout.
OVERFLOW = """() => Array.from(document.querySelectorAll("body *"))
  .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
  .slice(0, 5).map((e) => e.tagName + (e.id ? "#" + e.id : "") + "." + e.className)"""


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveUi]:
    server = LiveUi(tmp_path / "ws")
    yield server
    server.stop()


def assert_labelled(page: Page, where: str) -> int:
    """Every visible control has a non-empty accessible name; returns how many were checked."""
    checked = 0
    controls = page.locator(CONTROLS)
    for index in range(controls.count()):
        control = controls.nth(index)
        if control.is_visible():
            expect(control, f"{where}: control #{index} has no label").to_have_accessible_name(re.compile(r"\w"))
            checked += 1
    return checked


def test_phone_width_and_labels(live: LiveUi, chromium_browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nscreenshots in {shots}")
    page = chromium_browser.new_page(viewport=PHONE, is_mobile=True, has_touch=True)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    first_admin(page, live.url)
    created = page.request.post(live.url + "/api/environments", headers=csrf_headers(page),
                                data=json.dumps({"name": "alpha", "example": "flux-lora"}))
    assert created.status == 201, created.text()

    labelled = 0
    for path, ready in PAGES.items():
        page.goto(live.url + path)
        page.locator(ready).first.wait_for()
        name = path.strip("/") or "home"
        page.screenshot(path=shots / f"phone-{name}.png", full_page=True)
        fits = page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
        assert fits, f"{path} is wider than the phone: {page.evaluate(OVERFLOW)}"
        labelled += assert_labelled(page, path)

    # Until onboarding is finished or skipped, the administrator's home page points to it.
    page.goto(live.url + "/")
    expect(page.get_by_role("link", name="Get started").last).to_be_visible()
    expect(page.locator("#onboarding-prompt")).to_be_visible()
    page.goto(live.url + "/onboarding")
    page.locator("#example-choices label").first.wait_for()
    with page.expect_response(lambda r: r.url.endswith("/api/onboarding") and r.request.method == "GET") as answer:
        page.get_by_role("button", name="Skip for now").click()
    assert answer.value.json()["done"] is True and page.url == live.url + "/"
    expect(page.locator("#onboarding-prompt")).to_be_hidden()

    # Configuration tabs from the keyboard (arrow keys move between tabs), each panel's fields labelled.
    page.goto(live.url + "/config")
    page.locator("#opt-lora_rank").wait_for()
    tabs = page.get_by_role("tab")
    tabs.first.focus()
    for index in range(tabs.count()):
        tab = tabs.nth(index)
        expect(tab).to_be_focused()
        expect(tab).to_have_attribute("aria-selected", "true")
        labelled += assert_labelled(page, f"/config tab {tab.inner_text()}")
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth"), page.evaluate(OVERFLOW)
        page.keyboard.press("ArrowRight")
    expect(tabs.first).to_be_focused()  # wrapped around

    # The wizard's steps, one after the other, with Enter on the focused Next button; the environment has no dataset
    # now, which its review says.
    (live.workspace / "configs" / "alpha" / "multidatabackend.json").unlink()
    page.goto(live.url + "/wizard")
    page.locator("#families label").first.wait_for()
    expect(page.locator("#step-count")).to_have_text(re.compile(r"^\d+$"))  # counted once the page is ready
    count = int(page.locator("#step-count").inner_text())
    for step in range(1, count + 1):
        expect(page.locator("#step-number")).to_have_text(str(step))
        labelled += assert_labelled(page, f"/wizard step {step}")
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth"), page.evaluate(OVERFLOW)
        page.screenshot(path=shots / f"phone-wizard-{step:02d}.png", full_page=True)
        if step < count:
            page.get_by_role("button", name="Next").focus()
            page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Finish")).to_be_visible()
    expect(page.locator("#review-warning")).to_contain_text("No dataset is set yet")
    assert labelled > 60
    assert errors == []
