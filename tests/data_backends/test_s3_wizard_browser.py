"""The dataset wizard in headless Chromium with S3 storage: the s3 backend's options rendered from their metadata,
Test connection, the scan preview of the bucket's images, and the saved entry — against ``simpletuner server``
and the loopback S3 server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from s3_helpers import upload_folder

from simpletuner.core.cli.demo_commands import make_demo_images

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic", "--disable-dev-shm-usage"]
PASSWORD = "correct horse battery"
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")


@pytest.fixture
def live(tmp_path: Path, closed_endpoint: str, aws_environment: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """``simpletuner server`` on a fresh workspace holding an environment ``pets``."""
    workspace = tmp_path / "ws"
    env = workspace / "configs" / "pets"
    env.mkdir(parents=True)
    (env / "config.json").write_text(json.dumps({"model_family": "flux"}))
    port = closed_endpoint.rsplit(":", 1)[1]
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "simpletuner"), "server", "--port", port, "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **aws_environment,
                                                   "SIMPLETUNER_WORKSPACE": str(workspace)})
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, (tmp_path / "server.log").read_text()
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except OSError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
    yield url, workspace
    process.terminate()
    process.wait(timeout=30)
    log.close()


def test_s3_dataset_through_the_wizard(live: tuple[str, Path], s3_endpoint: str, bucket: str, s3_client: Any,
                                       tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, workspace = live
    make_demo_images(tmp_path / "demo", 4)
    upload_folder(s3_client, bucket, tmp_path / "demo", "pets/images")
    secret = "browser-secret-value-7"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url + "/")
        page.fill("input[name=username]", "root")
        page.fill("input[name=email]", "root@example.org")
        page.fill("input[name=password]", PASSWORD)
        page.get_by_role("button", name="Create administrator").click()
        page.wait_for_url("**/login")
        page.fill("input[name=username]", "root")
        page.fill("input[name=password]", PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(url + "/")

        # outbound requests reach public addresses only, unless an admin allows more: allow the loopback server
        page.get_by_role("button", name="Admin", exact=True).click()  # the admin pages are in its menu
        page.get_by_role("link", name="Outbound").click()
        page.get_by_label("Allowed hosts and networks").fill(s3_endpoint.split("://", 1)[1])
        with page.expect_navigation():  # saved: the page reloads with the policy in effect
            page.get_by_role("button", name="Save").click()
        expect(page.get_by_label("Allowed hosts and networks")).to_have_value(s3_endpoint.split("://", 1)[1])

        page.goto(url + "/datasets?env=pets")
        page.locator("#ds-storage option[value=s3]").wait_for(state="attached")
        page.get_by_label("Storage").select_option("s3")
        expect(page.get_by_role("button", name="Browse directories")).to_be_hidden()
        page.get_by_label("S3 bucket").fill(bucket)
        page.get_by_label("S3 endpoint URL").fill(s3_endpoint)
        page.get_by_label("S3 key prefix").fill("pets")
        page.get_by_label("S3 access key id").fill("AKIDBROWSER")
        page.get_by_label("S3 secret access key").fill(secret)
        assert page.get_by_label("S3 secret access key").get_attribute("type") == "password"
        for control in page.locator("#remote-storage input, #remote-storage select").all():
            expect(control).to_have_accessible_name(re.compile(r"\w"))

        page.get_by_role("button", name="Test connection").click()
        expect(page.locator("#remote-status")).to_have_text(
            re.compile(rf"^Connected: s3://{bucket}/pets at http://127\.0\.0\.1:\d+$"))
        page.get_by_label("S3 bucket").fill("missing-bucket")
        page.get_by_role("button", name="Test connection").click()
        expect(page.locator("#remote-status")).to_contain_text("bucket 'missing-bucket' does not exist")
        page.get_by_label("S3 bucket").fill(bucket)

        page.get_by_label("Path under the key prefix (empty: the prefix itself)").fill("images")
        page.get_by_label("Resolution", exact=True).fill("128")
        page.get_by_label("Resolution type").select_option("pixel")
        page.get_by_role("button", name="Check the images").click()
        expect(page.locator("#scan-summary")).to_have_text(re.compile(r"^4 images, \d usable; "))
        previews = page.locator("#scan-result img")
        assert previews.count() >= 1 and previews.first.get_attribute("src").startswith("data:image/jpeg")

        page.get_by_label("Dataset name").fill("cloud")
        page.get_by_role("button", name="Save dataset to pets").click()
        expect(page.locator("#ds-status")).to_have_text(re.compile(r"^Saved to "))
        saved = json.loads((workspace / "configs" / "pets" / "multidatabackend.json").read_text())
        assert {k: saved[0][k] for k in ("id", "type", "aws_bucket_name", "aws_data_prefix", "instance_data_dir",
                                         "cache_dir_vae", "aws_secret_access_key")} == {
            "id": "cloud", "type": "s3", "aws_bucket_name": bucket, "aws_data_prefix": "pets",
            "instance_data_dir": "images", "cache_dir_vae": "cache/vae/cloud", "aws_secret_access_key": secret}
        assert saved[1]["dataset_type"] == "text_embeds"

        shown = page.request.get(url + "/api/environments/pets/datasets")
        assert shown.ok and secret not in shown.text()
        assert errors == []
        browser.close()
