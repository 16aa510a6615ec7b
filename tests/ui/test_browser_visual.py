"""The visual system in headless Chromium, on one server and one browser for the module: every page renders with
zero console errors and zero failed requests (a screenshot of each); the grouped navigation and the account menu
follow the permissions; on a phone the header stays one row and its menu opens and closes by click and keyboard;
a save shows a toast; rename, duplicate and delete ask in modal dialogs (never window.prompt/confirm); dark mode
follows the system setting."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from .browser_checks import (
    DESKTOP,
    PAGES,
    PHONE,
    Watcher,
    fill_workspace,
    open_page,
    screenshot,
    screenshot_folder,
    shot_name,
)
from .conftest import PASSWORD, LiveUi, launched_chromium, log_in, needs_chromium

pytestmark = [needs_chromium, pytest.mark.timeout(300)]
#: Lists what sticks out on the right, to say which element breaks the layout.
OVERFLOW = """() => Array.from(document.querySelectorAll("body *"))
  .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
  .slice(0, 5).map((e) => e.tagName + (e.id ? "#" + e.id : "") + "." + e.className)"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveUi]:
    server = LiveUi(tmp_path_factory.mktemp("visual") / "ws")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_browser() -> Iterator[Browser]:
    with launched_chromium() as instance:
        yield instance


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = screenshot_folder(tmp_path_factory.mktemp("screenshots"))
    print(f"\nscreenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def sessions(live: LiveUi, shared_browser: Browser, shots: Path) -> dict[str, Any]:
    """The first administrator (set up through the pages, which are photographed), two environments and a viewer;
    the storage state of the admin's and the viewer's sessions."""
    context = shared_browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    watcher = Watcher(page)
    page.goto(live.url + "/")
    page.fill("input[name=username]", "root")
    page.fill("input[name=email]", "root@example.org")
    page.fill("input[name=password]", PASSWORD)
    screenshot(page, shots, "desktop-setup")
    page.get_by_role("button", name="Create administrator").click()
    page.wait_for_url("**/login")
    expect(page.locator("#result .toast")).to_contain_text("Administrator created")  # a toast after the redirect
    screenshot(page, shots, "desktop-login")
    log_in(page, live.url, "root")
    fill_workspace(page, "vera", PASSWORD)
    assert watcher.take() == []
    admin_state = context.storage_state()
    viewer_context = shared_browser.new_context(viewport=DESKTOP)
    log_in(viewer_context.new_page(), live.url, "vera")
    viewer = viewer_context.storage_state()
    viewer_context.close()
    context.close()
    return {"admin": admin_state, "viewer": viewer}


@pytest.fixture
def admin(shared_browser: Browser, sessions: dict[str, Any]) -> Iterator[BrowserContext]:
    context = shared_browser.new_context(viewport=DESKTOP, storage_state=sessions["admin"])
    yield context
    context.close()


def test_every_page_renders_without_errors(live: LiveUi, admin: BrowserContext, shots: Path) -> None:
    page = admin.new_page()
    watcher = Watcher(page)
    for path, ready in PAGES.items():
        open_page(page, live.url + path, ready)
        assert watcher.take() == [], path
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth"), page.evaluate(OVERFLOW)
        expect(page).to_have_title(re.compile(r"^\S.* · SimpleTuner$"))
        assert page.locator("main h1").inner_text() == page.title().rsplit(" · ", 1)[0]
        expect(page.locator("head link[rel=icon]")).to_have_attribute("href", "/static/favicon.svg")
        screenshot(page, shots, "desktop-" + shot_name(path))
    # a page that does not exist is a page of the app with a way back
    answer = page.goto(live.url + "/no-such-page")
    assert answer is not None and answer.status == 404
    expect(page.get_by_role("link", name="Go to the home page")).to_be_visible()
    screenshot(page, shots, "desktop-not-found")
    assert all("404" in problem for problem in watcher.take())  # the page's own status, nothing else
    icon = page.request.get(live.url + "/static/favicon.svg")  # browsers ask for it on every page
    assert icon.ok and icon.headers["content-type"].startswith("image/svg+xml")


def test_a_new_api_key_is_shown_once_with_a_copy_button(live: LiveUi, shared_browser: Browser,
                                                        sessions: dict[str, Any], shots: Path) -> None:
    context = shared_browser.new_context(viewport=DESKTOP, storage_state=sessions["admin"])
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    page = context.new_page()
    watcher = Watcher(page)
    open_page(page, live.url + "/", "main h2")
    page.get_by_role("button", name="root (account)").click()
    page.get_by_role("link", name="API keys", exact=True).click()
    page.wait_for_url("**/profile#api-keys")
    expect(page.locator("#api-keys .empty-state")).to_contain_text("No API key yet")
    page.get_by_label("Key name").fill("laptop-cli")
    page.get_by_role("button", name="Create key").click()
    box = page.locator("#new-key")
    expect(box).to_be_visible()
    key = box.locator("code").inner_text()
    assert key.startswith("st_")
    expect(box.get_by_role("button", name="Copy")).to_be_focused()  # ready for Enter, and in view
    expect(page.locator("#api-keys .empty-state")).to_have_count(0)
    page.keyboard.press("Enter")
    expect(page.locator("#result .toast").last).to_have_text(re.compile("^Copied to the clipboard"))
    box.scroll_into_view_if_needed()
    screenshot(page, shots, "desktop-profile-new-key", full_page=False)
    assert page.evaluate("navigator.clipboard.readText()") == key
    # the copied text is the key itself: it opens the API
    assert page.request.get(live.url + "/api/environments", headers={"X-API-Key": key}).ok
    page.reload()  # shown once: afterwards only its prefix
    expect(page.locator("#new-key")).to_be_hidden()
    expect(page.locator("#api-keys table")).to_contain_text("laptop-cli")
    assert key not in page.content()
    assert watcher.take() == []
    context.close()


def menu_links(page: Page, menu: str) -> list[str]:
    return [text.strip() for text in page.locator(f"#{menu} a, #{menu} button").all_inner_texts()]


def test_grouped_navigation_and_account_menu(live: LiveUi, shared_browser: Browser, admin: BrowserContext,
                                            sessions: dict[str, Any], shots: Path) -> None:
    page = admin.new_page()
    watcher = Watcher(page)
    open_page(page, live.url + "/config", PAGES["/config"])
    header = page.locator("#site-header")
    assert header.bounding_box()["height"] <= 64  # type: ignore[index]
    train = page.get_by_role("button", name="Train", exact=True)
    admin_menu = page.get_by_role("button", name="Admin", exact=True)
    account = page.get_by_role("button", name="root (account)")
    expect(page.get_by_role("link", name="Training")).to_be_hidden()  # closed until asked for
    expect(train).to_have_attribute("aria-expanded", "false")
    expect(page.locator(".nav-group.current")).to_have_count(1)  # the group of the page shown is marked

    train.click()
    expect(train).to_have_attribute("aria-expanded", "true")
    assert menu_links(page, "menu-train") == ["Training", "Wizard", "Datasets", "Configuration", "Environments"]
    expect(page.locator("#menu-train a[aria-current=page]")).to_have_text("Configuration")
    admin_menu.click()  # one menu at a time
    expect(train).to_have_attribute("aria-expanded", "false")
    assert menu_links(page, "menu-admin") == ["Get started", "Users", "Levels", "Login providers", "Registration",
                                              "Allowed roots", "Outbound", "Retention", "Audit", "Plugins"]
    screenshot(page, shots, "desktop-navigation-admin", full_page=False)
    page.locator("main h1").click()  # a click elsewhere closes it
    expect(admin_menu).to_have_attribute("aria-expanded", "false")

    # by keyboard: Enter opens and moves into the menu, Escape closes and returns to the button
    account.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("link", name="Profile")).to_be_focused()
    assert menu_links(page, "menu-account") == ["Profile", "API keys", "Log out"]
    page.keyboard.press("Escape")
    expect(account).to_be_focused()
    expect(account).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("Space")
    page.get_by_role("link", name="API keys").click()
    page.wait_for_url("**/profile#api-keys")
    assert watcher.take() == []

    # A viewer's menus are built from the same permissions as the pages: no wizard, no administration but plugins.
    viewer = shared_browser.new_context(viewport=DESKTOP, storage_state=sessions["viewer"]).new_page()
    open_page(viewer, live.url + "/", "main h2")
    viewer.get_by_role("button", name="Train", exact=True).click()
    assert menu_links(viewer, "menu-train") == ["Training", "Datasets", "Configuration", "Environments"]
    viewer.get_by_role("button", name="Admin", exact=True).click()
    assert menu_links(viewer, "menu-admin") == ["Plugins"]
    viewer.get_by_role("button", name="vera (account)").click()
    assert menu_links(viewer, "menu-account") == ["Profile", "Log out"]  # viewers hold no API keys
    viewer.get_by_role("button", name="Log out").click()
    viewer.wait_for_url("**/login")
    viewer.context.close()


def test_phone_header_and_menu(live: LiveUi, shared_browser: Browser, sessions: dict[str, Any], shots: Path) -> None:
    context = shared_browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True,
                                         storage_state=sessions["admin"])
    page = context.new_page()
    watcher = Watcher(page)
    for path in ("/", "/training", "/config", "/environments", "/profile"):
        open_page(page, live.url + path, PAGES[path])
        assert page.locator("#site-header").bounding_box()["height"] <= 64, path  # type: ignore[index]
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth"), page.evaluate(OVERFLOW)
        screenshot(page, shots, "phone-" + shot_name(path))
    assert watcher.take() == []
    # tables become one card per row: a row's actions are on screen, not past a sideways scroll
    open_page(page, live.url + "/environments", PAGES["/environments"])
    delete = page.get_by_role("button", name="Delete alpha").bounding_box()
    assert delete is not None and delete["x"] + delete["width"] <= PHONE["width"]
    expect(page.locator("#env-table tr[data-env=alpha] td").nth(1)).to_have_attribute("data-label", "Owner")

    open_page(page, live.url + "/", "main h2")
    menu = page.get_by_role("button", name="Menu")
    nav = page.locator("#site-nav")
    expect(nav).to_be_hidden()
    menu.click()  # a tap opens it: every group's links at once, the environment switcher and the account
    expect(menu).to_have_attribute("aria-expanded", "true")
    for name in ("Training", "Wizard", "Environments", "Users", "Audit", "Profile", "API keys"):
        expect(nav.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(nav.get_by_label("Environment")).to_be_visible()
    expect(nav.get_by_role("button", name="Log out")).to_be_visible()
    screenshot(page, shots, "phone-menu-open", full_page=False)
    menu.click()
    expect(nav).to_be_hidden()

    menu.focus()  # by keyboard: Enter opens, Tab walks into it, Escape closes and returns to the button
    page.keyboard.press("Enter")
    expect(nav).to_be_visible()
    page.keyboard.press("Tab")
    expect(nav.get_by_role("link", name="Home", exact=True)).to_be_focused()
    page.keyboard.press("Escape")
    expect(nav).to_be_hidden()
    expect(menu).to_be_focused()
    page.keyboard.press("Space")
    expect(nav).to_be_visible()
    nav.get_by_role("link", name="Datasets", exact=True).click()
    page.wait_for_url("**/datasets")
    expect(page.locator("#site-nav")).to_be_hidden()
    assert watcher.take() == []
    context.close()


def test_saving_shows_a_toast(live: LiveUi, admin: BrowserContext, shots: Path) -> None:
    page = admin.new_page()
    watcher = Watcher(page)
    open_page(page, live.url + "/config", PAGES["/config"])
    page.get_by_role("tab", name="Model").click()
    rank = page.locator("#opt-lora_rank")
    rank.fill("0")
    page.get_by_role("button", name="Save").click()
    failed = page.locator("#result .toast-error")
    expect(failed).to_have_text(re.compile("^Not saved: fix the marked fields"))
    expect(failed).to_have_attribute("role", "alert")
    failed.get_by_role("button", name="Dismiss").click()
    expect(failed).to_have_count(0)
    with page.expect_response(lambda response: response.url.endswith("/config/validate")):
        rank.fill("8")  # the check as you type answers before the page is left
    page.get_by_role("button", name="Save").click()
    saved = page.locator("#result .toast-success")
    expect(saved).to_have_text(re.compile("^Saved 1 change to alpha"))
    screenshot(page, shots, "desktop-config-saved", full_page=False)
    assert json.loads((live.workspace / "configs" / "alpha" / "config.json").read_text())["lora_rank"] == 8

    # a form that reloads its page confirms the save on the reloaded page (leaving once the checks as you type are
    # answered: a request cut short by leaving the page is not a failed one)
    page.wait_for_load_state("networkidle")
    open_page(page, live.url + "/admin/retention", "main form")
    with page.expect_navigation():
        page.get_by_role("button", name="Save").click()
    expect(page.locator("#result .toast-success")).to_have_text(re.compile("^Saved"))
    # a failure says why, beside the form and in a toast
    page.locator("#audit_days").fill("-3")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#result .toast-error")).to_contain_text("Not saved")
    expect(page.locator("main form .status")).to_be_visible()
    # the only failed requests are the two refused saves (the browser logs each as a console error too)
    assert sorted(watcher.take()) == sorted([
        "HTTP 422: PATCH " + live.url + "/api/environments/alpha/config",
        "HTTP 400: PATCH " + live.url + "/api/settings/retention",
        "console error: Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)",
        "console error: Failed to load resource: the server responded with a status of 400 (Bad Request)"])


def test_rename_duplicate_and_delete_ask_in_modal_dialogs(live: LiveUi, admin: BrowserContext, shots: Path) -> None:
    page = admin.new_page()
    watcher = Watcher(page)
    native: list[str] = []
    page.on("dialog", lambda dialog: (native.append(dialog.type), dialog.dismiss()))
    configs = live.workspace / "configs"
    open_page(page, live.url + "/environments", "#env-table tbody tr[data-env=alpha]")

    page.get_by_role("button", name="Duplicate alpha").click()
    dialog = page.get_by_role("dialog", name="Duplicate alpha")
    expect(dialog).to_be_visible()
    name = dialog.get_by_label("Name of the copy")
    expect(name).to_be_focused()
    expect(name).to_have_value("alpha-copy")
    screenshot(page, shots, "desktop-environments-duplicate", full_page=False)
    name.fill("")
    dialog.get_by_role("button", name="Duplicate").click()
    expect(dialog.locator(".field-error")).to_have_text("Enter a name first.")
    name.fill("beta")
    name.press("Enter")
    expect(page.locator("#env-table tr[data-env=beta]")).to_be_visible()
    expect(page.locator("#result .toast")).to_contain_text("Copied alpha to beta.")
    assert (configs / "beta" / "config.json").is_file()

    page.get_by_role("button", name="Rename beta").click()
    dialog = page.get_by_role("dialog", name="Rename beta")
    dialog.get_by_label("New name").fill("gamma")
    page.keyboard.press("Escape")  # cancelled: nothing renamed
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("button", name="Rename beta")).to_be_focused()
    assert (configs / "beta").is_dir()
    page.get_by_role("button", name="Rename beta").click()
    dialog = page.get_by_role("dialog", name="Rename beta")
    dialog.get_by_label("New name").fill("gamma")
    dialog.get_by_role("button", name="Rename").click()
    expect(page.locator("#env-table tr[data-env=gamma]")).to_be_visible()
    assert (configs / "gamma").is_dir() and not (configs / "beta").exists()

    page.get_by_role("button", name="Delete gamma").click()
    dialog = page.get_by_role("dialog", name="Delete gamma?")
    expect(dialog).to_contain_text("cannot be undone")
    screenshot(page, shots, "desktop-environments-delete", full_page=False)
    dialog.get_by_role("button", name="Cancel").click()
    assert (configs / "gamma").is_dir()
    page.get_by_role("button", name="Delete gamma").click()
    page.get_by_role("dialog", name="Delete gamma?").get_by_role("button", name="Delete").click()
    expect(page.locator("#env-table tr[data-env=gamma]")).to_have_count(0)
    expect(page.locator("#result .toast")).to_contain_text("Deleted gamma.")
    assert not (configs / "gamma").exists()
    assert native == [] and watcher.take() == []


def test_dark_mode_follows_the_system(live: LiveUi, shared_browser: Browser, sessions: dict[str, Any],
                                      shots: Path) -> None:
    context = shared_browser.new_context(viewport=DESKTOP, color_scheme="dark", storage_state=sessions["admin"])
    page = context.new_page()
    watcher = Watcher(page)
    luminance = """(property) => {
      const [r, g, b] = getComputedStyle(document.body)[property].match(/\\d+/g).map(Number);
      return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
    }"""
    for path in ("/", "/training", "/config", "/environments", "/wizard", "/admin/users"):
        open_page(page, live.url + path, PAGES[path])
        assert page.evaluate(luminance, "backgroundColor") < 0.1 and page.evaluate(luminance, "color") > 0.8, path
        screenshot(page, shots, "dark-" + shot_name(path))
    assert watcher.take() == []
    context.close()
