"""Browser journey in headless Chromium (Debian ``chromium`` driven by Playwright): first admin → onboarding with
an example → configuration tabs (an invalid value shows the server's error beside its field, nothing saved) →
dataset wizard with a ZIP upload. (Training and the viewer's journey: test_browser_training.py.) Screenshots go to
a printed folder."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect

from .conftest import LiveUi, first_admin, needs_chromium

pytestmark = needs_chromium


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    live = LiveUi(tmp_path / "ws")
    yield live.url, live.workspace
    live.stop()


def dataset_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, size in enumerate([(96, 96), (96, 96), (32, 32)]):
            image = io.BytesIO()
            Image.new("RGB", size, (40 * index, 90, 200)).save(image, "PNG")
            archive.writestr(f"img{index}.png", image.getvalue())
            archive.writestr(f"img{index}.txt", f"a blue square number {index}")
    return buffer.getvalue()


def test_journey(server: tuple[str, Path], chromium_browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, workspace = server
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nscreenshots in {shots}")
    page = chromium_browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    first_admin(page, url, shots / "01-setup.png")

    page.goto(url + "/onboarding")
    page.get_by_text("Flux.1 [dev] LoRA").click()
    page.get_by_label("Name of the new environment").fill("pets")
    page.screenshot(path=shots / "02-onboarding.png", full_page=True)
    page.get_by_role("button", name="Finish").click()
    page.wait_for_url("**/wizard")
    page.screenshot(path=shots / "03-wizard.png", full_page=True)
    assert json.loads((workspace / "configs" / "pets" / "config.json").read_text())["model_family"] == "flux"

    page.goto(url + "/config")
    page.get_by_role("tab", name="Model").click()
    rank = page.get_by_label("LoRA rank", exact=True)
    rank.fill("0")
    page.get_by_role("button", name="Save").click()
    error = page.locator("#err-lora_rank")
    error.wait_for(state="visible")
    assert "must be at least 1" in error.inner_text()
    page.screenshot(path=shots / "04-config-error.png", full_page=True)
    assert json.loads((workspace / "configs" / "pets" / "config.json").read_text())["lora_rank"] == 16

    page.goto(url + "/datasets")
    page.get_by_role("button", name="Browse directories").click()
    page.get_by_role("button", name="Choose this folder").click()
    page.get_by_label("New folder (inside the folder shown in the browser)").fill("shapes")
    page.get_by_role("button", name="Create folder").click()
    page.locator("#upload-status").wait_for(state="visible")
    archive = tmp_path / "shapes.zip"
    archive.write_bytes(dataset_zip())
    page.set_input_files("#upload-files", str(archive))
    page.get_by_role("button", name="Upload into the chosen folder").click()
    expect(page.locator("#upload-status")).to_have_text(re.compile(r"^Uploaded 6 file"), timeout=20_000)
    page.get_by_label("Resolution", exact=True).fill("64")
    page.get_by_label("Resolution type").select_option("pixel")
    page.get_by_role("button", name="Check the folder").click()
    summary = page.locator("#scan-summary")
    summary.wait_for()
    assert summary.inner_text().startswith("3 images, 2 usable; 1 below")
    page.screenshot(path=shots / "05-datasets.png", full_page=True)
    page.get_by_role("button", name="Save dataset to pets").click()
    expect(page.locator("#ds-status")).to_have_text(re.compile(r"^Saved to "))
    datasets = json.loads((workspace / "configs" / "pets" / "multidatabackend.json").read_text())
    assert datasets[0]["instance_data_dir"].endswith("/shapes") and datasets[1]["dataset_type"] == "text_embeds"

    for path, name in (("/environments", "06-environments"), ("/training", "07-training")):
        page.goto(url + path)
        page.screenshot(path=shots / f"{name}.png", full_page=True)
    assert errors == []
