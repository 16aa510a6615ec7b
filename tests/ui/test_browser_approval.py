"""Browser journey of an approval in headless Chromium: a researcher's environment carries a command written on
disk; the Environments page shows it waiting, a researcher can review but not approve it, the admin reviews the
exact value and approves it, and the researcher's start is then accepted. Screenshots go to the test's folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .conftest import LiveUi, first_admin, log_in, needs_chromium
from .test_browser_training import api

pytestmark = [needs_chromium, pytest.mark.timeout(180)]
COMMAND = "python eval.py {local_checkpoint_path} {global_step}"


def test_a_waiting_environment_is_reviewed_and_approved_in_the_browser(live_ui: LiveUi, chromium_browser,
                                                                      tmp_path: Path) -> None:
    admin = chromium_browser.new_page()
    first_admin(admin, live_ui.url)
    assert api(admin, "POST", "/api/users", {"username": "rita", "email": "rita@example.org",
                                              "password": "correct horse battery", "levels": ["researcher"]})[0] == 201
    researcher = chromium_browser.new_context().new_page()
    log_in(researcher, live_ui.url, "rita")
    assert api(researcher, "POST", "/api/environments", {"name": "mine", "example": "flux-lora"})[0] == 201
    config_file = live_ui.workspace / "configs" / "mine" / "config.json"
    config_file.write_text(json.dumps(json.loads(config_file.read_text()) | {"post_checkpoint_script": COMMAND}))

    status, body = api(researcher, "POST", "/api/training/start", {"environment": "mine"})
    assert status == 409 and body["title"] == "Approval needed"
    researcher.goto(live_ui.url + "/environments")
    row = researcher.locator("tr[data-env=mine]")
    expect(row).to_contain_text("waiting for approval")
    expect(row).to_contain_text("rita")
    row.get_by_role("button", name="Review privileged values of mine").click()
    expect(researcher.locator("#review-table")).to_contain_text(COMMAND)
    expect(researcher.locator("#review-approve")).to_have_count(0)  # researchers cannot approve

    admin.goto(live_ui.url + "/environments")
    admin.locator("tr[data-env=mine]").get_by_role("button", name="Review privileged values of mine").click()
    expect(admin.locator("#review-table")).to_contain_text("post_checkpoint_script")
    admin.screenshot(path=tmp_path / "review.png", full_page=True)
    admin.get_by_role("button", name="Approve these values").click()
    expect(admin.locator("tr[data-env=mine]")).to_contain_text("approved")
    admin.screenshot(path=tmp_path / "approved.png", full_page=True)

    assert api(researcher, "POST", "/api/training/start", {"environment": "mine"})[0] == 202

    # the admin allows a models folder outside the workspace on the Allowed roots page
    models = tmp_path / "models"
    models.mkdir()
    admin.goto(live_ui.url + "/admin/paths")
    admin.fill("#roots", f"{models}, relative/folder")
    admin.get_by_role("button", name="Save").click()
    expect(admin.locator(".status")).to_contain_text("not an absolute path")
    admin.fill("#roots", str(models))
    with admin.expect_navigation():  # saved: the page reloads with the new roots in effect
        admin.get_by_role("button", name="Save").click()
    expect(admin.locator("table").first).to_contain_text(str(models.resolve()))
    admin.screenshot(path=tmp_path / "roots.png", full_page=True)
