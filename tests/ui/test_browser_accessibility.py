"""Accessibility of every page in headless Chromium: axe-core (vendored) finds no serious or critical violation on any
page, in the light and the dark scheme, at desktop and phone widths, nor with a menu, a dialog or a toast open;
Tab reaches every control with a visible focus ring; every page loads with zero console errors and zero failed
requests. The phone pass photographs every page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from .browser_checks import (
    DESKTOP,
    PAGES,
    PHONE,
    Watcher,
    axe_violations,
    describe,
    fill_workspace,
    keyboard_walk,
    open_page,
    screenshot,
    screenshot_folder,
    shot_name,
)
from .conftest import PASSWORD, LiveUi, launched_chromium, log_in, needs_chromium

pytestmark = [needs_chromium, pytest.mark.timeout(420)]
#: The pages a viewer opens (the rest answer them 403).
VIEWER_PAGES = ("/", "/training", "/datasets", "/config", "/environments", "/plugins", "/profile")
#: A name as long as the header must still fit beside the menus.
VIEWER = "vera-from-the-visual-effects-team"
#: Just wider than the phone layout: the full header on the least room it gets.
NARROW_DESKTOP = {"width": 761, "height": 800}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveUi]:
    server = LiveUi(tmp_path_factory.mktemp("a11y") / "ws")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(live: LiveUi) -> Iterator[Browser]:
    with launched_chromium() as instance:
        yield instance


def page_problems(page: Page, watcher: Watcher, label: str) -> list[str]:
    """What is wrong with the page shown: axe's serious and critical findings, console errors, failed requests."""
    problems = [f"{label}: {problem}" for problem in watcher.take()]
    violations = axe_violations(page)
    if violations:
        problems.append(f"{label}: " + describe(violations))
    return problems


@pytest.fixture(scope="module")
def sessions(live: LiveUi, browser: Browser) -> dict[str, Any]:
    """The pages anyone can open are checked on the way (setup, login, a page that does not exist, at both widths);
    then the administrator fills the workspace. Returns those findings and the admin's and viewer's sessions."""
    findings: list[str] = []
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        watcher = Watcher(page)
        open_page(page, live.url + "/", "main form")
        findings += page_problems(page, watcher, f"{name} setup")
        open_page(page, live.url + "/login", "main")
        findings += page_problems(page, watcher, f"{name} login")
        page.goto(live.url + "/no-such-page")
        findings += [p for p in page_problems(page, watcher, f"{name} missing page") if "404" not in p]
        context.close()
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    watcher = Watcher(page)
    open_page(page, live.url + "/", "main form")
    page.fill("input[name=username]", "root")
    page.fill("input[name=email]", "root@example.org")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Create administrator").click()
    page.wait_for_url("**/login")
    page.locator("#result .toast").wait_for()  # the login page with its "administrator created" toast
    findings += page_problems(page, watcher, "login")
    log_in(page, live.url, "root")
    fill_workspace(page, VIEWER, PASSWORD)
    admin = context.storage_state()
    viewer_context = browser.new_context(viewport=DESKTOP)
    log_in(viewer_context.new_page(), live.url, VIEWER)
    viewer = viewer_context.storage_state()
    viewer_context.close()
    context.close()
    return {"findings": findings, "admin": admin, "viewer": viewer}


def test_the_pages_anyone_can_open(sessions: dict[str, Any]) -> None:
    assert sessions["findings"] == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_at_desktop_width(live: LiveUi, browser: Browser, sessions: dict[str, Any], scheme: str) -> None:
    context = browser.new_context(viewport=DESKTOP, color_scheme=scheme, storage_state=sessions["admin"])
    page = context.new_page()
    watcher = Watcher(page)
    problems: list[str] = []
    for path, ready in PAGES.items():
        open_page(page, live.url + path, ready)
        problems += page_problems(page, watcher, path)
    context.close()
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_at_phone_width(live: LiveUi, browser: Browser, sessions: dict[str, Any], scheme: str,
                                   tmp_path: Path) -> None:
    shots = screenshot_folder(tmp_path) if scheme == "light" else None
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, color_scheme=scheme,
                                  storage_state=sessions["admin"])
    page = context.new_page()
    watcher = Watcher(page)
    problems: list[str] = []
    for path, ready in PAGES.items():
        open_page(page, live.url + path, ready)
        problems += page_problems(page, watcher, path)
        header = page.locator("#site-header").bounding_box()
        assert header is not None and header["height"] <= 64, path
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth"), path
        if shots is not None:
            screenshot(page, shots, "phone-" + shot_name(path))
    context.close()
    assert problems == [], "\n".join(problems)


def test_a_viewers_pages_with_a_long_name_on_a_narrow_desktop(live: LiveUi, browser: Browser,
                                                              sessions: dict[str, Any]) -> None:
    context = browser.new_context(viewport=NARROW_DESKTOP, storage_state=sessions["viewer"])
    page = context.new_page()
    watcher = Watcher(page)
    problems: list[str] = []
    for path in VIEWER_PAGES:
        open_page(page, live.url + path, "main h1")
        problems += page_problems(page, watcher, "viewer " + path)
        header = page.locator("#site-header").bounding_box()
        assert header is not None and header["height"] <= 64, path
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth"), path
    expect(page.get_by_role("button", name=VIEWER + " (account)")).to_be_visible()  # cut short, named in full
    expect(page.get_by_label("Environment")).to_be_visible()
    context.close()
    assert problems == [], "\n".join(problems)


def test_open_menus_dialogs_and_toasts(live: LiveUi, browser: Browser, sessions: dict[str, Any]) -> None:
    context = browser.new_context(viewport=DESKTOP, storage_state=sessions["admin"])
    page = context.new_page()
    watcher = Watcher(page)
    problems: list[str] = []
    open_page(page, live.url + "/environments", "#env-table tbody tr[data-env=alpha]")
    for menu in ("Train", "Admin", "root (account)"):
        page.get_by_role("button", name=menu, exact=True).click()
        problems += page_problems(page, watcher, f"{menu} menu open")
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Duplicate alpha").click()
    dialog = page.get_by_role("dialog", name="Duplicate alpha")
    dialog.get_by_role("button", name="Duplicate").click()  # the name offered: alpha-copy
    expect(page.locator("#result .toast")).to_contain_text("Copied alpha to alpha-copy.")
    problems += page_problems(page, watcher, "toast shown")
    page.get_by_role("button", name="Delete alpha-copy").click()
    expect(page.get_by_role("dialog", name="Delete alpha-copy?")).to_be_visible()
    problems += page_problems(page, watcher, "delete dialog open")
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.locator("#env-table tr[data-env=alpha-copy]")).to_have_count(0)
    page.set_viewport_size(PHONE)
    page.get_by_role("button", name="Menu").click()
    problems += page_problems(page, watcher, "phone menu open")
    page.emulate_media(color_scheme="dark")
    problems += page_problems(page, watcher, "phone menu open, dark")
    context.close()
    assert problems == [], "\n".join(problems)


def test_tab_reaches_every_control_with_a_visible_focus(live: LiveUi, browser: Browser,
                                                        sessions: dict[str, Any]) -> None:
    context = browser.new_context(viewport=DESKTOP, storage_state=sessions["admin"])
    page = context.new_page()
    unreached: dict[str, list[str]] = {}
    hidden_focus: dict[str, list[str]] = {}
    for path, ready in PAGES.items():
        open_page(page, live.url + path, ready)
        missed, unseen = keyboard_walk(page)
        if missed:
            unreached[path] = missed
        if unseen:
            hidden_focus[path] = unseen
    context.close()
    assert unreached == {} and hidden_focus == {}, (unreached, hidden_focus)


def test_a_wizard_step_starts_on_its_chosen_option(live: LiveUi, browser: Browser, sessions: dict[str, Any]) -> None:
    context = browser.new_context(viewport=DESKTOP, storage_state=sessions["admin"])
    page = context.new_page()
    open_page(page, live.url + "/wizard", PAGES["/wizard"])
    chosen = page.locator("input[name=family]:checked")
    expect(chosen).to_have_value("flux")  # alpha comes from the Flux example
    expect(chosen).to_be_focused()  # not the first card of the group
    page.keyboard.press("ArrowRight")  # arrows move the choice within the group
    expect(page.locator("input[name=family]:checked")).not_to_have_value("flux")
    context.close()


def test_every_configuration_tab_and_wizard_step(live: LiveUi, browser: Browser, sessions: dict[str, Any]) -> None:
    """The pages' hidden parts (other tabs, later steps) are checked as each is shown."""
    context = browser.new_context(viewport=DESKTOP, storage_state=sessions["admin"])
    page = context.new_page()
    watcher = Watcher(page)
    problems: list[str] = []
    open_page(page, live.url + "/config", PAGES["/config"])
    tabs = page.get_by_role("tab")
    assert tabs.count() >= 5
    for index in range(tabs.count()):
        tab = tabs.nth(index)
        tab.click()
        expect(tab).to_have_attribute("aria-selected", "true")
        problems += page_problems(page, watcher, "configuration tab " + tab.inner_text())
    open_page(page, live.url + "/wizard", PAGES["/wizard"])
    expect(page.locator("#step-count")).to_have_text(re.compile(r"^\d+$"))  # counted once the page is ready
    steps = int(page.locator("#step-count").inner_text())
    for number in range(1, steps + 1):
        expect(page.locator("#step-number")).to_have_text(str(number))
        page.wait_for_load_state("networkidle")
        problems += page_problems(page, watcher, f"wizard step {number}")
        if number < steps:
            page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("button", name="Finish")).to_be_visible()
    context.close()
    assert problems == [], "\n".join(problems)
