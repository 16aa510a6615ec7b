"""An option holding a JSON object (the validation prompt library) is shown and edited as JSON on the
Configuration page in Chromium, never as "[object Object]"; malformed JSON is flagged beside the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .conftest import LiveUi, first_admin, needs_chromium
from .test_browser_training import api

pytestmark = [needs_chromium, pytest.mark.timeout(120)]


def test_the_prompt_library_is_edited_as_json(live_ui: LiveUi, chromium_browser, tmp_path: Path) -> None:
    page = chromium_browser.new_page()
    first_admin(page, live_ui.url)
    assert api(page, "POST", "/api/environments", {"name": "lib", "example": "flux-lora"})[0] == 201
    page.goto(live_ui.url + "/config?env=lib")
    page.get_by_role("tab", name="Validations & Output").click()
    library = page.locator("#opt-validation_prompts")
    expect(library).to_have_value("{}")
    library.fill('{"cat": "a cat"')
    expect(page.locator("#err-validation_prompts")).to_contain_text("not valid JSON")
    library.fill('{"cat": "a photo of a cat", "dog": {"prompt": "a dog", "seed": 7}}')
    expect(page.locator("#err-validation_prompts")).to_be_hidden()
    page.get_by_role("button", name="Save").click()
    config_file = live_ui.workspace / "configs" / "lib" / "config.json"
    expect(page.locator("#src-validation_prompts")).to_contain_text("set here")
    page.screenshot(path=tmp_path / "prompt-library.png", full_page=True)
    saved = json.loads(config_file.read_text())
    assert saved["validation_prompts"] == {"cat": "a photo of a cat", "dog": {"prompt": "a dog", "seed": 7}}
    page.reload()
    page.get_by_role("tab", name="Validations & Output").click()
    assert json.loads(page.locator("#opt-validation_prompts").input_value())["dog"]["seed"] == 7
    assert "[object Object]" not in page.content()

    # what config check warns about shows on the page too
    saved["torch_num_threads"] = 4  # a SimpleTuner key that has no effect here
    config_file.write_text(json.dumps(saved))
    page.reload()
    expect(page.locator("#config-warnings")).to_contain_text("torch_num_threads")
