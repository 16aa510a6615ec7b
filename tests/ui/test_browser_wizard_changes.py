"""The training wizard writes only what it changes: effective values it leaves alone keep coming from their
source (defaults, the flavour, the default environment), and a learning-rate preset brings its scheduler along."""

from __future__ import annotations

import json

import pytest

from .conftest import LiveUi, first_admin, needs_chromium
from .test_browser_training import api, wizard_to

pytestmark = [needs_chromium, pytest.mark.timeout(120)]


def test_the_wizard_writes_only_its_changes_and_the_presets_scheduler(live_ui: LiveUi, chromium_browser) -> None:
    page = chromium_browser.new_page()
    first_admin(page, live_ui.url)
    assert api(page, "POST", "/api/environments", {"name": "w", "example": "flux-lora"})[0] == 201
    config_file = live_ui.workspace / "configs" / "w" / "config.json"
    before = json.loads(config_file.read_text())
    page.goto(live_ui.url + "/wizard?env=w")
    wizard_to(page, "Learning rate, batch and optimizer")
    page.get_by_role("button", name="Fast (strong style, watch for overfitting)").click()
    wizard_to(page, "Review")
    page.get_by_role("button", name="Finish").click()
    page.wait_for_url("**/training")
    after = json.loads(config_file.read_text())
    assert after["lr_scheduler"] == "cosine" and after["learning_rate"] == 4e-4
    # only keys the wizard changed are new in the file; everything else still comes from where it came from
    assert set(after) - set(before) <= {"learning_rate", "train_batch_size", "optimizer", "lr_scheduler"}
    assert {k: v for k, v in after.items() if k in before and k not in {"learning_rate", "train_batch_size",
                                                                       "lr_scheduler", "optimizer"}} == \
        {k: v for k, v in before.items() if k not in {"learning_rate", "train_batch_size", "lr_scheduler", "optimizer"}}
