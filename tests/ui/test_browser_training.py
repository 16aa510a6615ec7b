"""Browser journey of a training run in headless Chromium: onboarding with the tiny demo (4 steps on 128 px images)
→ the training wizard with a Hub login against a loopback Hub and a private repository, its review as a diff →
Start on the Training page → live phase, step/total and loss chart → a validation image → the job completes and its
LoRA downloads. Then a viewer watches a running job and the queue, finds no start/stop or edit controls, and is
refused (403) when forcing the API. Screenshots of each page go to a printed folder."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_server import HubState, fake_hub
from playwright.sync_api import Page, expect

from simpletuner.core.training.run_folders import run_folders

from .browser_checks import PHONE, axe_violations, describe, screenshot, screenshot_folder
from .conftest import LiveUi, csrf_headers, first_admin, log_in, needs_chromium

pytestmark = needs_chromium
TOKEN = "hf_demoUserWriteToken0123456789"
#: Records every text the phase and step fields show, to prove the page updated while the job ran.
RECORDER = """() => {
  window.seen = {phase: [], step: []};
  const watch = (id, key) => new MutationObserver(() => window.seen[key].push(document.getElementById(id).textContent))
    .observe(document.getElementById(id), {childList: true, characterData: true, subtree: true});
  watch("st-phase", "phase");
  watch("st-step", "step");
}"""


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubState]:
    # The server inherits this environment: no HF_TOKEN (the stored token must be the one used), not offline.
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with fake_hub() as stub:
        stub.tokens = {TOKEN: ("demo-user", "write")}
        yield stub


@pytest.fixture
def live(tmp_path: Path, hub: HubState) -> Iterator[LiveUi]:
    server = LiveUi(tmp_path / "ws", {"HF_ENDPOINT": hub.base_url, "HF_HUB_DISABLE_TELEMETRY": "1"}, workers=2)
    yield server
    server.stop()


def api(page: Page, method: str, path: str, body: object = None) -> tuple[int, dict]:
    """A JSON API call with the page's session and CSRF token."""
    response = page.request.fetch(page.evaluate("location.origin") + path, method=method, headers=csrf_headers(page),
                                  data=json.dumps(body) if body is not None else None)
    try:
        return response.status, response.json()
    except Exception:
        return response.status, {}


def wizard_to(page: Page, heading: str) -> None:
    """Press Next until the wizard step titled ``heading`` shows (once the wizard has loaded its choices)."""
    page.locator("#families label").first.wait_for(state="attached")
    target = page.get_by_role("heading", name=heading, exact=True)
    for _ in range(12):
        if target.is_visible():
            return
        page.get_by_role("button", name="Next").click()
    raise AssertionError(f"the wizard has no step {heading!r}")


def test_training_journey_and_viewer(live: LiveUi, hub: HubState, chromium_browser,  # type: ignore[no-untyped-def]
                                     tmp_path: Path) -> None:
    url, workspace = live.url, live.workspace
    shots = tmp_path / "screenshots"
    shots.mkdir()
    docs = screenshot_folder(shots)  # docs/screenshots/ with SIMPLETUNER_UPDATE_SCREENSHOTS=1
    print(f"\nscreenshots in {shots} and {docs}")
    page = chromium_browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    first_admin(page, url)

    # Onboarding: the tiny demo, 4 steps.
    page.goto(url + "/onboarding")
    expect(page.get_by_role("radio", name=re.compile("^Tiny Flux demo"))).to_be_checked()
    page.get_by_label("Training steps of the tiny demo").fill("4")
    page.screenshot(path=shots / "01-onboarding.png", full_page=True)
    page.get_by_role("button", name="Finish").click()
    ready = page.get_by_role("heading", name="Your demo is ready — start training")
    expect(ready).to_be_visible(timeout=120_000)
    expect(ready).to_be_focused()
    expect(page.locator("#ready-name")).to_have_text("demo-flux")
    expect(page.locator("#env-switcher")).to_have_value("demo-flux")
    expect(page.get_by_role("link", name="Start training")).to_have_attribute("href", "/training")
    page.screenshot(path=shots / "01b-demo-ready.png", full_page=True)
    page.get_by_role("link", name="Review its settings in the wizard").click()
    page.wait_for_url("**/wizard")

    # Wizard: its publishing step logs in to the (loopback) Hub and chooses a private repository.
    expect(page.get_by_role("radio", name=re.compile(r"^Flux(?!\.2)"))).to_be_checked()
    wizard_to(page, "Memory")
    expect(page.get_by_role("radio", name=re.compile("^Keep the current settings"))).to_be_checked()
    page.get_by_role("radio", name=re.compile("^balanced")).check()
    wizard_to(page, "How long")
    expect(page.get_by_label("Number")).to_have_value("4")
    wizard_to(page, "Publishing")
    page.get_by_label("Upload the result to the Hugging Face Hub").check()
    page.get_by_label("Repository (user/name)").fill("demo-user/tiny-lora")
    expect(page.get_by_role("checkbox", name=re.compile("^Private repository"))).to_be_checked()
    state = page.locator("#hub-state")
    expect(state).to_have_text(f"Not logged in to {hub.base_url}.")
    token_box = page.get_by_label("Access token with write access (from your Hub settings)")
    token_box.fill("hf_notAValidToken000000")
    page.get_by_role("button", name="Log in to the Hub").click()
    expect(state).to_contain_text("refused this token (401)")
    token_box.fill(TOKEN)
    token_box.press("Enter")
    expect(state).to_have_text(f"Logged in to {hub.base_url} as demo-user (write token).")
    expect(token_box).to_have_value("")
    page.screenshot(path=shots / "02-wizard-publishing.png", full_page=True)
    assert hub.auth_of("/api/whoami-v2") == ["Bearer hf_notAValidToken000000", f"Bearer {TOKEN}"]
    assert (workspace / "secrets" / "hf-hub" / "1.token").read_text().strip() == TOKEN
    assert TOKEN not in page.content()

    wizard_to(page, "Review")
    diff = page.locator("#diff")
    # Effective values with their sources, not the file's keys: options the file lacks show their defaults.
    expect(diff.locator("tr", has_text="hub_model_id")).to_contain_text('none (default)"demo-user/tiny-lora" (this '
                                                                        'environment)')
    expect(diff.locator("tr", has_text="push_to_hub")).to_contain_text("false (default)true (this environment)")
    expect(diff.locator("tr", has_text="hub_private")).to_have_count(0)  # already private by default: not pinned
    expect(diff.locator("tr", has_text="gradient_checkpointing")).to_contain_text("true (this environment)")
    expect(page.locator("#review-warning")).to_be_hidden()  # the demo has its dataset
    expect(diff).not_to_contain_text("(unset)")
    expect(page.locator("#review-errors")).to_be_hidden()
    page.screenshot(path=shots / "03-wizard-review.png", full_page=True)
    page.get_by_role("button", name="Finish").click()
    page.wait_for_url("**/training")
    written = json.loads((workspace / "configs" / "demo-flux" / "config.json").read_text())
    assert written["push_to_hub"] is True and "hub_private" not in written and written["max_train_steps"] == 4

    # Training: Start, live progress, a validation image, completion and the LoRA download.
    page.evaluate(RECORDER)
    runs_on = page.get_by_label("Run on")
    assert runs_on.locator("option").all_inner_texts()[:1] == ["As the environment says"]
    assert {"This server", "Ray cluster", "Slurm cluster"} <= set(runs_on.locator("option").all_inner_texts())
    runs_on.select_option(label="This server")
    page.get_by_role("button", name="Start training demo-flux").click()
    expect(page.locator("#train-message")).to_have_text(re.compile(r"^Job #1 running"))
    expect(page.locator("#st-executor")).to_have_text("local")
    start = page.locator("#train-start")
    expect(start).to_have_text("Queue another run of demo-flux")  # a second click queues another, and says so
    expect(start).to_have_attribute("title", re.compile("Job #1 of this environment"))
    expect(page.locator("#st-status")).to_have_text("completed", timeout=150_000)
    expect(page.locator("#train-message")).to_have_text("Job #1 completed")  # not "running" any more
    expect(start).to_have_text("Start training demo-flux")
    expect(page.locator("#history tbody tr", has_text="#1").locator(".steps")).to_have_text("4 / 4")
    seen = page.evaluate("window.seen")
    assert {"caching", "training"} <= set(seen["phase"]), seen
    assert any(re.fullmatch(r"[1-3] / 4", step) for step in seen["step"]), seen  # steps shown while running
    expect(page.locator("#st-step")).to_have_text("4 / 4")
    assert int(page.locator("#loss-chart").get_attribute("data-points") or 0) >= 2
    image = page.locator("#gallery img").first
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth > 0")
    expect(page.locator("#history tbody tr", has_text="#1")).to_contain_text("completed")
    expect(page.locator("#log-tail")).to_contain_text("Trained 4 steps")
    expect(page.locator("#st-cache")).to_have_text("—")  # no stale caching progress on a finished job

    # The gallery: a step at a time, each image with its prompt; full size with its settings on a click.
    prompt = "a red circle on a blue background"
    expect(page.locator("#gallery figcaption").first).to_have_text("validation: " + prompt)  # name: prompt
    slider = page.get_by_role("slider", name="Step")
    expect(slider).to_be_visible()
    expect(page.locator("#gallery-step-value")).to_have_text(re.compile(r"^step 4 \(\d of \d\)$"))
    slider.focus()
    slider.press("Home")
    expect(page.locator("#gallery-step-value")).to_have_text(re.compile(r"^step 2 \(1 of \d\)$"))
    page.get_by_role("button", name=re.compile("^Show full size: ")).first.click()
    viewer_dialog = page.get_by_role("dialog", name=re.compile("at step 2$"))
    expect(viewer_dialog).to_be_visible()
    expect(viewer_dialog.locator("dd").first).to_have_text(prompt)
    expect(viewer_dialog).to_contain_text("128 × 128")
    screenshot(page, docs, "desktop-training-image", full_page=False)
    assert not (found := axe_violations(page)), describe(found)
    page.emulate_media(color_scheme="dark")
    screenshot(page, docs, "dark-training-image", full_page=False)
    assert not (found := axe_violations(page)), describe(found)
    page.emulate_media(color_scheme="light")
    viewer_dialog.get_by_role("button", name="Next").click()
    expect(page.locator("#image-viewer-title")).to_have_text(re.compile("at step [34]$"))
    page.keyboard.press("Escape")
    expect(viewer_dialog).to_be_hidden()

    # What the run was configured with.
    page.get_by_text("Configuration of this run").click()
    steps_row = page.locator("#run-config-table tbody tr", has=page.locator("td[title=max_train_steps]"))
    expect(steps_row).to_contain_text("4")
    expect(steps_row).to_contain_text("environment demo-flux")
    expect(page.locator("#run-config-table tbody tr", has=page.locator("td[title=lr_warmup_steps]"))).to_have_count(0)
    screenshot(page, docs, "desktop-training-finished")
    page.get_by_label("Show every option (with defaults)").check()
    expect(page.locator("#run-config-table tbody tr", has=page.locator("td[title=lr_warmup_steps]"))).to_contain_text(
        "default")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download pytorch_lora_weights.safetensors").click()
    download = download_info.value
    assert download.suggested_filename == "demo-flux-job1-pytorch_lora_weights.safetensors"
    [run] = run_folders(workspace / "output" / "demo-flux")
    lora = run.path / "pytorch_lora_weights.safetensors"
    expect(page.locator("#run-folder")).to_be_visible()
    assert Path(page.locator("#run-dir").inner_text()).resolve() == run.path.resolve()
    assert Path(download.path()).read_bytes() == lora.read_bytes()
    expect(page.get_by_role("heading", name="Use this model")).to_be_visible()
    expect(page.locator("#usage-code")).to_contain_text("pipeline = FluxPipeline.from_pretrained(")
    expect(page.locator("#usage-code")).to_contain_text("pipeline.load_lora_weights(")
    page.reload()
    expect(page.locator("#loss-chart")).to_have_attribute("data-points", "4")  # the curve comes back from the API
    expect(page.locator("#loss-chart")).to_have_attribute("data-steps", "1-4")  # the step axis
    page.get_by_label(re.compile("^Smoothing")).fill("0.5")
    expect(page.locator("#chart-smoothing-value")).to_have_text("0.50")
    expect(page.locator("#loss-chart")).to_have_attribute("aria-label", re.compile(r"4 steps up to step 4, last loss"))

    # Try it: the finished job's LoRA beside the base model, rendered by a short job of its own.
    expect(page.get_by_role("heading", name="Try it")).to_be_visible()
    expect(page.locator("#try-weights option")).to_have_text(["Final model", "Checkpoint at step 2",
                                                               "Checkpoint at step 3"])
    page.get_by_label("Prompts, one per line (up to 8)").fill("a red square\na blue circle")
    page.get_by_label(re.compile("^Strength")).fill("1.5")
    expect(page.locator("#try-strength-value")).to_have_text("1.50")
    page.get_by_role("button", name="Try", exact=True).click()
    expect(page.locator("#try-message")).to_have_text(re.compile(r"^Queued as job #2"))
    pairs = page.locator("#tries .try-pair")
    expect(pairs).to_have_count(2, timeout=120_000)
    expect(pairs.first).to_contain_text("a red square")
    expect(page.locator("#tries .try > figcaption")).to_contain_text("final model · strength 1.50")
    for picture in page.locator("#tries img").all():
        expect(picture).to_be_visible()
        assert picture.evaluate("img => img.complete && img.naturalWidth > 0")
    try_row = page.locator("#history tbody tr", has_text="#2")
    expect(try_row).to_contain_text("demo-flux (try)")
    expect(try_row).to_contain_text("completed", timeout=60_000)  # its process has ended: the GPUs are free
    expect(page.locator("#job-title")).to_have_text(re.compile(r"^Job #1 "))  # the trained job stays shown
    page.screenshot(path=shots / "04b-try-it.png", full_page=True)

    # A long job runs and another waits behind it (one CPU), for a viewer to watch.
    assert api(page, "POST", "/api/users", {"username": "vera", "email": "vera@example.org",
                                            "password": "correct horse battery", "levels": ["viewer"]})[0] == 201
    assert api(page, "POST", "/api/environments", {"name": "demo-long", "copy_of": "demo-flux"})[0] == 201
    long_values = {"max_train_steps": 100000, "validation_steps": 0, "checkpointing_steps": 0,
                   "output_dir": "output/demo-long", "push_to_hub": False}
    assert api(page, "PATCH", "/api/environments/demo-long/config", {"values": long_values})[0] == 200
    assert api(page, "POST", "/api/training/start", {"environment": "demo-long"})[1]["job_id"] == 3
    queued = api(page, "POST", "/api/training/start", {"environment": "demo-flux"})[1]
    assert queued == {"job_id": 4, "status": "queued", "position": 1, "executor": "local"}

    viewer = chromium_browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    viewer.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(viewer, url, "vera")
    expect(viewer.get_by_role("link", name="Wizard")).to_have_count(0)
    viewer.goto(url + "/training")
    expect(viewer.locator("#job-title")).to_have_text("Job #3 · demo-long · root")
    expect(viewer.locator("#st-status")).to_have_text("running")
    expect(viewer.locator("#queue li")).to_have_text(["#4 demo-flux (root), place 1"])
    expect(viewer.locator("#history tbody tr", has_text="#1")).to_contain_text("completed")
    expect(viewer.get_by_role("button", name=re.compile("^Start training"))).to_have_count(0)
    expect(viewer.get_by_role("button", name="Stop")).to_have_count(0)
    expect(viewer.locator("#watch-only")).to_be_visible()
    # the running job's console output arrives live over the event stream
    with (workspace / "jobs" / "3" / "output.log").open("a") as log:
        log.write("a line printed while the viewer watches\n")
    expect(viewer.locator("#log-tail")).to_contain_text("a line printed while the viewer watches", timeout=10_000)
    viewer.screenshot(path=shots / "05-viewer-training.png", full_page=True)
    for method, path, body in (("POST", "/api/training/start", {"environment": "demo-flux"}),
                               ("POST", "/api/training/stop", {"job_id": 3}),
                               ("PATCH", "/api/environments/demo-flux/config", {"values": {"lora_rank": 4}}),
                               ("PUT", "/api/hub/login", {"token": TOKEN}),
                               ("POST", "/api/environments", {"name": "mine"})):
        assert api(viewer, method, path, body)[0] == 403, (method, path)

    viewer.goto(url + "/config")
    expect(viewer.locator("#opt-lora_rank")).to_be_disabled()
    expect(viewer.get_by_role("button", name="Save")).to_have_count(0)
    expect(viewer.locator("#hub-login")).to_have_count(0)
    viewer.get_by_role("tab", name="Memory Optimisation").click()
    expect(viewer.get_by_role("button", name="Apply aggressive")).to_be_disabled()
    viewer.screenshot(path=shots / "06-viewer-config.png", full_page=True)
    viewer.goto(url + "/environments")
    expect(viewer.locator("#env-table tbody tr", has_text="demo-long")).to_be_visible()
    expect(viewer.get_by_role("heading", name="New environment")).to_have_count(0)
    expect(viewer.locator("#env-table button")).to_have_count(0)
    assert viewer.goto(url + "/wizard").status == 403  # type: ignore[union-attr]

    # The lead stops both jobs once the running one has recorded its configuration (as its run starts); the viewer's
    # page follows the outcome live.
    for _ in range(240):
        if api(page, "GET", "/api/jobs/3/config")[0] == 200:
            break
        page.wait_for_timeout(250)
    else:
        raise AssertionError("job #3 never recorded its configuration")
    viewer.goto(url + "/training")
    assert api(page, "POST", "/api/training/stop", {"job_id": 4}) == (202, {"job_id": 4, "status": "cancelled"})
    assert api(page, "POST", "/api/training/stop", {"job_id": 3})[0] == 202
    expect(viewer.locator("#history tbody tr", has_text="#4")).to_contain_text("cancelled")
    expect(viewer.locator("#history tbody tr", has_text="#3")).to_contain_text("stopped", timeout=60_000)
    expect(viewer.locator("#queue-empty")).to_be_visible()

    # Two runs compared: the settings that differ, with where each value came from.
    compare = viewer.get_by_role("button", name="Compare the two chosen runs")
    expect(compare).to_be_disabled()
    expect(viewer.get_by_label("Compare job #2")).to_be_disabled()  # a try has no training configuration
    viewer.get_by_label("Compare job #1").check()
    viewer.get_by_label("Compare job #3").check()
    compare.click()
    comparison = viewer.get_by_role("region", name="Two runs compared")
    expect(comparison).to_be_visible()
    steps_row = comparison.locator("#comparison-settings tbody tr", has=viewer.locator("td[title=max_train_steps]"))
    expect(steps_row).to_contain_text("4")
    expect(steps_row).to_contain_text("100000")
    expect(comparison.locator("#comparison-summary thead th").nth(1)).to_have_text("Job #1 · demo-flux")  # older first
    expect(comparison.locator("#comparison-summary")).to_contain_text("stopped")
    same = comparison.locator("#comparison-settings tbody tr", has=viewer.locator("td[title=lora_rank]"))
    expect(same).to_have_count(0)  # only what differs
    screenshot(viewer, docs, "desktop-training-compare")
    assert not (found := axe_violations(viewer)), describe(found)
    viewer.set_viewport_size(PHONE)  # on a phone: nothing wider than the screen, the tables become cards
    expect(comparison).to_be_visible()
    assert viewer.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(viewer, docs, "phone-training-compare")
    assert not (found := axe_violations(viewer)), describe(found)
    assert errors == []
