"""The Environments page in headless Chromium with a SimpleTuner checkout: '+' names open their configuration, and a
folder that cannot be used as an environment is shown with the reason instead of missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import simpletuner_configs as st
from playwright.sync_api import expect

from simpletuner.core.workspace import Workspace

from .conftest import LiveUi, first_admin, needs_chromium

pytestmark = [needs_chromium, pytest.mark.timeout(180)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveUi]:
    workspace = tmp_path / "ws"
    configs = st.simpletuner_checkout(Workspace(workspace))
    st.write_environment(configs, "my pixart", st.PIXART_CONFIG)
    live = LiveUi(workspace)
    yield live
    live.stop()


def test_environments_page_shows_every_folder(server: LiveUi, chromium_browser) -> None:  # type: ignore[no-untyped-def]
    page = chromium_browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    first_admin(page, server.url)

    page.goto(server.url + "/environments")
    unloadable = page.locator('tr[data-env="my pixart"]')
    expect(unloadable).to_contain_text("Cannot be loaded: environment name 'my pixart' may use letters")
    expect(unloadable).to_contain_text("rename the folder (e.g. to 'my-pixart')")

    page.locator(f'tr[data-env="{st.PIXART}"]').get_by_role("link", name="Open").click()
    page.wait_for_url("**/config?env=pixart_sigma%2Bfull")
    page.get_by_role("tab", name="Model").click()
    expect(page.get_by_label("PixArt max tokens", exact=True)).to_be_visible()
    assert errors == []
