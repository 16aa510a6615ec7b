"""The training wizard's LyCORIS step in Chromium: it appears only for a LyCORIS adapter, offers the algorithm
presets with a size, shows the file it will write in the review, and Finish writes the config and
lycoris_config.json (targets of the family's blocks, the chosen size)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .conftest import LiveUi, csrf_headers, first_admin, needs_chromium

pytestmark = [needs_chromium, pytest.mark.timeout(180)]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveUi]:
    server = LiveUi(tmp_path / "ws")
    yield server
    server.stop()


def next_to(page: Page, heading: str) -> None:
    for _ in range(15):
        if page.get_by_role("heading", name=heading, exact=True).is_visible():
            return
        page.get_by_role("button", name="Next").click()
    raise AssertionError(f"the wizard has no step {heading!r}")


def test_the_lycoris_step_writes_the_chosen_algorithm(live: LiveUi, chromium_browser) -> None:  # type: ignore[no-untyped-def]
    page = chromium_browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    first_admin(page, live.url)
    created = page.request.post(live.url + "/api/environments", headers=csrf_headers(page),
                                data=json.dumps({"name": "lyco", "example": "flux-lora"}))
    assert created.status == 201, created.text()
    page.goto(live.url + "/wizard")
    page.locator("#families label").first.wait_for()
    lora_steps = page.locator("section.step").count() - 1  # every step but LyCORIS'
    expect(page.locator("#step-count")).to_have_text(str(lora_steps))

    next_to(page, "What to train")
    page.get_by_role("radio", name="LyCORIS").check()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="LyCORIS algorithm")).to_be_visible()
    expect(page.locator("#step-count")).to_have_text(str(lora_steps + 1))
    expect(page.get_by_role("radio", name=re.compile("^LoKr"))).to_be_checked()
    expect(page.get_by_label("Factor (smaller means a larger adapter)")).to_have_value("16")
    page.get_by_role("radio", name=re.compile("^LoCon")).check()
    expect(page.get_by_role("spinbutton", name="Rank", exact=True)).to_have_value("32")
    page.get_by_role("radio", name=re.compile("^Full")).check()
    expect(page.locator("#lycoris-size-field")).to_be_hidden()
    page.get_by_role("radio", name=re.compile("^LoKr")).check()
    page.get_by_label("Factor (smaller means a larger adapter)").fill("8")

    next_to(page, "Review")
    expect(page.locator("#review-lycoris")).to_contain_text('"algo":"lokr"')
    expect(page.locator("#review-lycoris")).to_contain_text('"factor":8')
    expect(page.locator("#diff tr", has_text="lora_type")).to_contain_text('"lycoris" (this environment)')
    page.get_by_role("button", name="Finish").click()
    page.wait_for_url("**/training")

    folder = live.workspace / "configs" / "lyco"
    assert json.loads((folder / "config.json").read_text())["lora_type"] == "lycoris"
    written = json.loads((folder / "lycoris_config.json").read_text())
    assert written["algo"] == "lokr" and written["factor"] == 8
    assert written["apply_preset"] == {"target_module": ["FluxTransformerBlock", "FluxSingleTransformerBlock"]}

    # back in the wizard the environment's LyCORIS choice is shown; with a LoRA the step is passed over
    page.goto(live.url + "/wizard")
    page.locator("#families label").first.wait_for()
    expect(page.locator("input[name=adapter][value=lycoris]")).to_be_checked()
    next_to(page, "LyCORIS algorithm")
    expect(page.get_by_label("Factor (smaller means a larger adapter)")).to_have_value("8")
    page.get_by_role("button", name="Back").click()
    page.get_by_role("radio", name="LoRA", exact=True).check()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Memory")).to_be_visible()
    page.get_by_role("button", name="Back").click()
    expect(page.get_by_role("heading", name="What to train")).to_be_visible()
    assert errors == []
