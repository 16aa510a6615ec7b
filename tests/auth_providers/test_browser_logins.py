"""LDAP and OpenID Connect logins through the web app itself, in headless Chromium against ``simpletuner server``:
the admin adds the LDAP provider on the Auth Providers page and the OIDC provider through the API, each with a
group → level mapping; a directory user then logs in on the login page with their LDAP password, and an SSO user
through the provider's redirect flow. Each gets the mapped level: a permission of that level works, one of the next
level up is refused. Screenshots go to the test's folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect
from slapd_server import GROUPS, PEOPLE, READER_DN, READER_PASSWORD, Slapd
from ui.conftest import LiveUi, chromium_browser, csrf_headers, first_admin, needs_chromium  # noqa: F401

pytestmark = [needs_chromium, pytest.mark.timeout(240)]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveUi]:
    server = LiveUi(tmp_path / "ws")
    yield server
    server.stop()


def loopback_only(context: BrowserContext) -> BrowserContext:
    """Abort requests that leave the machine (the OIDC mock's page links a stylesheet on a CDN)."""
    def route(request_route: Route) -> None:
        host = urlsplit(request_route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            request_route.continue_()
        else:
            request_route.abort()

    context.route("**/*", route)
    return context


def api(page: Page, method: str, path: str, body: object = None) -> tuple[int, dict]:
    """A JSON API call with the page's session and CSRF token, as the page's own scripts make it."""
    response = page.request.fetch(page.evaluate("location.origin") + path, method=method, headers=csrf_headers(page),
                                  data=json.dumps(body) if body is not None else None)
    try:
        return response.status, response.json()
    except ValueError:
        return response.status, {}


def add_ldap_on_the_providers_page(page: Page, url: str, slapd: Slapd, shots: Path) -> None:
    """Fill the "Add LDAP" form, then map the directory's ml-team group to researcher on the new provider's form."""
    page.goto(url + "/admin/providers")
    form = page.locator("section", has=page.get_by_role("heading", name="Add LDAP"))
    form.locator("[name=name]").fill("corp-ldap")
    form.locator("[name=title]").fill("Corp directory")
    for option, value in {"ldap_server_url": slapd.url, "ldap_bind_dn": READER_DN,
                          "ldap_bind_password": READER_PASSWORD, "ldap_user_search_base": PEOPLE,
                          "ldap_group_search_base": GROUPS, "ldap_connect_timeout": "5"}.items():
        form.locator(f"[name='options.{option}']").fill(value)
    form.get_by_role("button", name="Add").click()
    added = page.locator("section", has_text="corp-ldap: ldap")
    expect(added).to_be_visible()
    added.locator("[name=group_levels]").fill(json.dumps({"ml-team": "researcher"}))
    added.get_by_role("button", name="Save").click()
    page.wait_for_load_state()
    added = page.locator("section", has_text="corp-ldap: ldap")
    expect(added.locator("[name=group_levels]")).to_have_value('{"ml-team": "researcher"}')
    added.get_by_role("button", name="Test connection").click()
    expect(page.locator("#result")).to_contain_text(f"OK: {slapd.url} (no TLS): bound as {READER_DN}")
    page.screenshot(path=shots / "01-providers.png", full_page=True)


def me(page: Page) -> dict:
    status, body = api(page, "GET", "/api/auth/me")
    assert status == 200, body
    return body


def test_ldap_and_oidc_users_log_in_through_the_app_with_mapped_levels(
        live: LiveUi, chromium_browser: Browser, slapd_server: Slapd, oidc_issuer: str,  # noqa: F811
        tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    admin = loopback_only(chromium_browser.new_context()).new_page()
    first_admin(admin, live.url)
    add_ldap_on_the_providers_page(admin, live.url, slapd_server, shots)
    status, body = api(admin, "POST", "/api/auth-providers", {
        "name": "company-sso", "type": "oidc", "title": "Company SSO",
        "options": {"oidc_issuer": oidc_issuer, "oidc_client_id": "simpletuner",
                    "oidc_client_secret": "client-secret", "oidc_timeout": 5},
        "group_levels": {"ml-team": "lead"}})
    assert status == 201, body
    assert "oidc_client_secret" not in json.dumps(body["provider"]["options"])  # secrets are write-only

    # bob is in the directory's ml-team group only: a researcher.
    bob = loopback_only(chromium_browser.new_context()).new_page()
    bob.goto(live.url + "/login")
    expect(bob.get_by_role("link", name="Log in with Company SSO")).to_be_visible()
    directory = bob.locator("section", has=bob.get_by_role("heading", name="Corp directory"))
    directory.locator("[name=username]").fill("bob")
    directory.locator("[name=password]").fill("bob-password")
    bob.screenshot(path=shots / "02-login-page.png", full_page=True)
    directory.get_by_role("button", name="Log in").click()
    bob.wait_for_url(live.url + "/")
    identity = me(bob)
    assert (identity["username"], identity["levels"], identity["auth_source"]) == ("bob", ["researcher"], "corp-ldap")
    assert identity["email"] == "bob@example.org"
    assert api(bob, "POST", "/api/environments", {"name": "bobs"})[0] == 201  # config.edit: a researcher's
    assert api(bob, "PATCH", "/api/jobs/1", {"position": 1})[0] == 403  # job.reorder: a lead's
    response = bob.goto(live.url + "/admin/users")
    assert response is not None and response.status == 403
    expect(bob.get_by_role("heading", name="Not permitted")).to_be_visible()  # a page of the app, not raw XML
    expect(bob.locator("main")).to_contain_text("this needs the permission users.manage")
    bob.screenshot(path=shots / "03-bob-refused.png", full_page=True)

    # A wrong directory password is refused on the same form.
    stranger = loopback_only(chromium_browser.new_context()).new_page()
    stranger.goto(live.url + "/login")
    directory = stranger.locator("section", has=stranger.get_by_role("heading", name="Corp directory"))
    directory.locator("[name=username]").fill("bob")
    directory.locator("[name=password]").fill("ada-password")
    directory.get_by_role("button", name="Log in").click()
    expect(directory.locator(".status")).to_be_visible()
    assert stranger.url.startswith(live.url + "/login")

    # ada signs in at the OIDC provider; her ml-team group maps to lead (her admins group is not mapped).
    ada = loopback_only(chromium_browser.new_context()).new_page()
    ada.goto(live.url + "/login")
    ada.get_by_role("link", name="Log in with Company SSO").click()
    ada.wait_for_url(oidc_issuer + "/**")
    ada.locator("input[name=sub]").fill("u-ada")
    ada.screenshot(path=shots / "04-oidc-authorize.png", full_page=True)
    ada.get_by_role("button", name="Authorize").click()
    ada.wait_for_url(live.url + "/")
    ada.screenshot(path=shots / "05-ada-home.png", full_page=True)
    identity = me(ada)
    assert (identity["username"], identity["levels"], identity["auth_source"]) == ("ada", ["lead"], "company-sso")
    assert api(ada, "POST", "/api/environments", {"name": "default"})[0] == 201  # config.edit.default: a lead's
    assert api(ada, "GET", "/api/users")[0] == 403  # users.manage: an admin's
    response = ada.goto(live.url + "/admin/providers")
    assert response is not None and response.status == 403
    print(f"\nscreenshots in {shots}")
