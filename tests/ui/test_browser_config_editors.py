"""The Configuration page's structured editors and approval state in Chromium, on one server for the module: the
validation prompt library is a table (rows added, saved, reloaded; a duplicate name or an empty prompt is flagged and
saves nothing); the LyCORIS config is a form with presets whose changes are saved with the page while keys the form
does not show are kept; privileged options show whether their value is approved, waiting, or what a change would
do, and an admin approves them there while a researcher cannot. Screenshots at desktop and phone widths, light and
dark, with axe-core finding nothing serious on the way."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from .browser_checks import DESKTOP, PHONE, Watcher, axe_violations, describe, screenshot_folder
from .browser_checks import screenshot as page_screenshot
from .conftest import PASSWORD, LiveUi, first_admin, launched_chromium, log_in, needs_chromium
from .test_browser_training import api

pytestmark = [needs_chromium, pytest.mark.timeout(240)]
COMMAND = "python eval.py {local_checkpoint_path} {global_step}"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveUi]:
    server = LiveUi(tmp_path_factory.mktemp("editors") / "ws")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(live: LiveUi) -> Iterator[Browser]:
    with launched_chromium() as instance:
        yield instance


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_folder(tmp_path_factory.mktemp("shots"))


@pytest.fixture(scope="module")
def admin_state(live: LiveUi, browser: Browser) -> dict[str, Any]:
    """The first administrator's session, with a researcher account made."""
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    first_admin(page, live.url)
    assert api(page, "POST", "/api/users", {"username": "rita", "email": "rita@example.org", "password": PASSWORD,
                                             "levels": ["researcher"]})[0] == 201
    state = context.storage_state()
    context.close()
    return state


def config_file(live: LiveUi, env: str, name: str = "config.json") -> Path:
    return live.workspace / "configs" / env / name


def open_config(page: Page, live: LiveUi, env: str, tab: str) -> None:
    page.goto(f"{live.url}/config?env={env}")
    page.locator("#opt-lora_rank").wait_for()
    page.get_by_role("tab", name=tab).click()


def screenshot(page: Page, folder: Path, name: str) -> None:
    """The whole page from its top (where the sticky header belongs)."""
    page.evaluate("window.scrollTo(0, 0)")
    page_screenshot(page, folder, name)


def expected_refusals(watcher: Watcher) -> None:
    """Forget what the refused saves above logged (their 422 answers, a request cut short by a reload); nothing
    else may have gone wrong."""
    unexpected = [p for p in watcher.take() if not ("422" in p or "ERR_ABORTED" in p)]
    assert unexpected == []


def no_serious_violations(page: Page, watcher: Watcher) -> None:
    problems = watcher.take()
    violations = axe_violations(page)
    assert problems == [] and violations == [], (problems, describe(violations))


def test_the_prompt_library_is_a_table(live: LiveUi, browser: Browser, admin_state: dict[str, Any],
                                       shots: Path) -> None:
    context = browser.new_context(viewport=DESKTOP, storage_state=admin_state)
    page = context.new_page()
    watcher = Watcher(page)
    page.goto(live.url + "/")
    assert api(page, "POST", "/api/environments", {"name": "lib", "example": "flux-lora"})[0] == 201
    open_config(page, live, "lib", "Validations & Output")
    library = page.get_by_role("group", name="Validation prompt library")
    expect(library).to_contain_text("No named prompts yet")
    library.get_by_role("button", name="Add prompt").click()
    expect(page.get_by_label("Name of prompt 1")).to_be_focused()  # a new row takes the focus
    page.keyboard.type("cat")
    page.keyboard.press("Tab")  # the keyboard moves on through the row
    expect(page.get_by_label("Text of prompt 1")).to_be_focused()
    page.keyboard.type("a photo of a cat")
    library.get_by_role("button", name="Add prompt").click()
    page.get_by_label("Name of prompt 2").fill("dog")
    page.get_by_label("Text of prompt 2").fill("a dog on a beach")
    page.locator("summary", has_text="of prompt 2").click()
    page.get_by_label("Seed of prompt 2").fill("7")
    page.get_by_label("Size of prompt 2").fill("1024x768")
    expect(page.locator("#err-validation_prompts")).to_be_hidden()
    no_serious_violations(page, watcher)
    screenshot(page, shots, "desktop-config-prompt-library")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#src-validation_prompts")).to_contain_text("set here")
    saved = json.loads(config_file(live, "lib").read_text())
    assert saved["validation_prompts"] == {"cat": "a photo of a cat",
                                           "dog": {"prompt": "a dog on a beach", "seed": 7, "resolution": "1024x768"}}

    page.reload()
    page.get_by_role("tab", name="Validations & Output").click()
    expect(page.get_by_label("Name of prompt 2")).to_have_value("dog")
    expect(page.get_by_label("Seed of prompt 2")).to_have_value("7")
    assert "[object Object]" not in page.content()

    # a second row named like the first cannot be sent (one would be lost): flagged, nothing saved
    before = config_file(live, "lib").read_bytes()
    library.get_by_role("button", name="Add prompt").click()
    page.get_by_label("Name of prompt 3").fill("cat")
    page.get_by_label("Text of prompt 3").fill("another cat")
    expect(page.locator("#err-validation_prompts")).to_contain_text('the name "cat" is used twice')
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#config-status")).to_contain_text("Not saved")
    # an empty prompt is the server's finding, beside the table, and the saved library stays as it was
    page.get_by_label("Name of prompt 3").fill("bird")
    page.get_by_label("Text of prompt 3").fill("")
    expect(page.locator("#err-validation_prompts")).to_contain_text("bird: the prompt is empty")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#config-status")).to_contain_text("Not saved")
    assert config_file(live, "lib").read_bytes() == before
    page.get_by_role("button", name="Remove prompt 1").click()
    expect(page.get_by_label("Name of prompt 1")).to_have_value("dog")
    page.get_by_label("Text of prompt 2").fill("a bird")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#config-status")).to_have_text("Saved.")
    saved = json.loads(config_file(live, "lib").read_text())
    assert list(saved["validation_prompts"]) == ["dog", "bird"]
    expected_refusals(watcher)

    page.emulate_media(color_scheme="dark")
    no_serious_violations(page, watcher)
    screenshot(page, shots, "dark-config-prompt-library")
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
    no_serious_violations(page, watcher)
    screenshot(page, shots, "phone-config-prompt-library")

    # what config check warns about shows on the page too
    saved["torch_num_threads"] = 4  # a SimpleTuner key that has no effect here
    config_file(live, "lib").write_text(json.dumps(saved))
    page.reload()
    expect(page.locator("#config-warnings")).to_contain_text("torch_num_threads")
    context.close()


def test_the_lycoris_config_is_a_form_with_presets(live: LiveUi, browser: Browser, admin_state: dict[str, Any],
                                                  shots: Path) -> None:
    context = browser.new_context(viewport=DESKTOP, storage_state=admin_state)
    page = context.new_page()
    watcher = Watcher(page)
    page.goto(live.url + "/")
    assert api(page, "POST", "/api/environments", {"name": "lyco", "example": "flux-lora"})[0] == 201
    lycoris_file = config_file(live, "lyco", "lycoris_config.json")
    lycoris_file.write_text(json.dumps({"algo": "lokr", "linear_dim": 10000, "linear_alpha": 1, "factor": 16,
                                        "dropout": 0.05, "use_tucker": True,
                                        "apply_preset": {"target_module": ["FluxTransformerBlock"],
                                                         "module_algo_map": {"Attention": {"factor": 8}}}}))
    open_config(page, live, "lyco", "Model")
    expect(page.locator("details.lycoris-form")).not_to_have_attribute("open", "")  # a standard LoRA for now
    page.get_by_label("LoRA type").select_option("lycoris")
    expect(page.get_by_text("LyCORIS settings: lokr")).to_be_visible()
    expect(page.locator("details.lycoris-form")).to_have_attribute("open", "")  # opened by choosing LyCORIS
    expect(page.get_by_label("Factor (LoKr)")).to_have_value("16")
    expect(page.get_by_label("Target modules")).to_have_value("FluxTransformerBlock")
    advanced = json.loads(page.get_by_label("Other keys (JSON)").input_value())
    assert advanced == {"dropout": 0.05, "use_tucker": True,
                        "apply_preset": {"module_algo_map": {"Attention": {"factor": 8}}}}
    page.get_by_label("Factor (LoKr)").fill("0")
    expect(page.locator("#lyco-errors")).to_contain_text("factor: must be -1 (automatic) or at least 1")
    page.get_by_label("Factor (LoKr)").fill("8")
    expect(page.locator("#lyco-errors")).to_be_hidden()
    no_serious_violations(page, watcher)
    screenshot(page, shots, "desktop-config-lycoris")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#config-status")).to_have_text("Saved.")
    assert json.loads(lycoris_file.read_text()) == {
        "algo": "lokr", "linear_dim": 10000, "linear_alpha": 1, "factor": 8, "dropout": 0.05, "use_tucker": True,
        "apply_preset": {"target_module": ["FluxTransformerBlock"],
                         "module_algo_map": {"Attention": {"factor": 8}}}}
    assert json.loads(config_file(live, "lyco").read_text())["lora_type"] == "lycoris"  # saved together

    # a preset fills the form's keys for the family; the other keys stay
    expect(page.locator("#src-lora_type")).to_have_text("set here")  # the page shows what was saved
    page.wait_for_load_state("networkidle")
    page.get_by_label("Start from a preset").select_option("locon")
    expect(page.get_by_label("Algorithm")).to_have_value("locon")
    expect(page.get_by_label("Rank (linear_dim)")).to_have_value("32")
    expect(page.get_by_label("Factor (LoKr)")).to_be_hidden()  # LoKr's own number leaves with LoKr
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#config-status")).to_have_text("Saved.")
    written = json.loads(lycoris_file.read_text())
    assert written["algo"] == "locon" and written["linear_dim"] == 32 and "factor" not in written
    assert written["dropout"] == 0.05 and written["apply_preset"]["module_algo_map"] == {"Attention": {"factor": 8}}
    assert "FluxSingleTransformerBlock" in written["apply_preset"]["target_module"]

    # bad JSON among the other keys saves nothing, the file stays as it was
    before = lycoris_file.read_bytes()
    expect(page.get_by_text("LyCORIS settings: locon")).to_be_visible()
    page.wait_for_load_state("networkidle")
    page.get_by_label("Other keys (JSON)").fill('{"dropout": 0.1')
    expect(page.locator("#lyco-errors")).to_contain_text("Other keys: not valid JSON yet")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#config-status")).to_contain_text("Not saved")
    assert lycoris_file.read_bytes() == before
    expected_refusals(watcher)

    page.emulate_media(color_scheme="dark")
    no_serious_violations(page, watcher)
    screenshot(page, shots, "dark-config-lycoris")
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
    no_serious_violations(page, watcher)
    screenshot(page, shots, "phone-config-lycoris")
    context.close()


def test_a_late_answer_does_not_hide_a_newer_problem(live: LiveUi, browser: Browser,
                                                    admin_state: dict[str, Any]) -> None:
    """Checks run as the user types; their answers may arrive out of order (a busy server): only the newest counts."""
    context = browser.new_context(viewport=DESKTOP, storage_state=admin_state)
    page = context.new_page()
    page.goto(live.url + "/")
    assert api(page, "POST", "/api/environments", {"name": "late", "example": "flux-lora"})[0] == 201
    config_file(live, "late", "lycoris_config.json").write_text(
        json.dumps({"algo": "lokr", "linear_dim": 10000, "linear_alpha": 1, "factor": 16}))
    open_config(page, live, "late", "Model")
    page.get_by_label("LoRA type").select_option("lycoris")
    expect(page.get_by_label("Factor (LoKr)")).to_have_value("16")
    page.wait_for_load_state("networkidle")

    held: list[Any] = []

    def hold_the_first(route: Any) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)  # answered below, after the newer check

    page.route("**/lycoris/validate", hold_the_first)
    page.get_by_label("Factor (LoKr)").fill("12")  # valid: its answer will come last
    for _ in range(50):
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "the first check never left the page"
    page.get_by_label("Factor (LoKr)").fill("0")
    expect(page.locator("#lyco-errors")).to_contain_text("factor: must be -1 (automatic) or at least 1")
    held[0].continue_()
    page.wait_for_timeout(700)  # the stale answer arrives
    expect(page.locator("#lyco-errors")).to_contain_text("factor: must be -1 (automatic) or at least 1")

    # the same for the config's own fields
    held.clear()
    page.route("**/config/validate", hold_the_first)
    page.get_by_label("LoRA rank", exact=True).fill("8")
    for _ in range(50):
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "the first check never left the page"
    page.get_by_label("LoRA rank", exact=True).fill("0")
    expect(page.locator("#err-lora_rank")).not_to_be_empty()
    shown = page.locator("#err-lora_rank").inner_text()
    held[0].continue_()
    page.wait_for_timeout(700)
    expect(page.locator("#err-lora_rank")).to_have_text(shown)
    # the config's answers clear only the options' own lines, never the LyCORIS form's problem
    expect(page.locator("#lyco-errors")).to_contain_text("factor: must be -1 (automatic) or at least 1")
    context.close()


def test_privileged_options_show_their_approval(live: LiveUi, browser: Browser, admin_state: dict[str, Any],
                                                shots: Path) -> None:
    researcher_context = browser.new_context(viewport=DESKTOP)
    researcher = researcher_context.new_page()
    log_in(researcher, live.url, "rita")
    assert api(researcher, "POST", "/api/environments", {"name": "hers", "example": "flux-lora"})[0] == 201
    path = config_file(live, "hers")
    path.write_text(json.dumps(json.loads(path.read_text()) | {"post_checkpoint_script": COMMAND}))

    open_config(researcher, live, "hers", "Validations & Output")
    state = researcher.locator("#appr-post_checkpoint_script")
    expect(state).to_contain_text("Waiting for approval")
    expect(state.get_by_role("button")).to_have_count(0)  # a researcher cannot approve
    expect(researcher.locator("#opt-post_checkpoint_script")).to_be_disabled()  # nor change it
    expect(researcher.locator("#appr-post_upload_script")).to_contain_text("only users allowed to set privileged")
    expect(researcher.locator("#config-approval")).to_contain_text("post_checkpoint_script")
    researcher.set_viewport_size(PHONE)
    assert researcher.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
    screenshot(researcher, shots, "phone-config-approval-waiting")

    context = browser.new_context(viewport=DESKTOP, storage_state=admin_state)
    admin = context.new_page()
    watcher = Watcher(admin)
    open_config(admin, live, "hers", "Validations & Output")
    state = admin.locator("#appr-post_checkpoint_script")
    expect(state).to_contain_text("Waiting for approval")
    no_serious_violations(admin, watcher)
    screenshot(admin, shots, "desktop-config-approval-waiting")
    state.get_by_role("button", name="Review and approve the privileged values of hers").click()
    dialog = admin.get_by_role("dialog", name="Approve the privileged values of hers?")
    expect(dialog).to_contain_text(COMMAND)
    dialog.get_by_role("button", name="Approve these values").click()
    expect(state).to_contain_text("Approved by root")
    expect(admin.locator("#config-approval")).to_be_hidden()
    # an admin's change to approved values is approved as written
    admin.get_by_role("tab", name="Publishing").click()
    admin.locator("#opt-post_upload_script").fill("python notify.py {remote_checkpoint_path}")
    expect(admin.locator("#appr-post_upload_script")).to_contain_text("approved as you write it")
    admin.emulate_media(color_scheme="dark")
    no_serious_violations(admin, watcher)
    screenshot(admin, shots, "dark-config-approval-approved")
    context.close()
    researcher.set_viewport_size(PHONE)
    researcher.reload()
    researcher.get_by_role("tab", name="Validations & Output").click()
    expect(researcher.locator("#appr-post_checkpoint_script")).to_contain_text("Approved by root")
    assert researcher.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
    screenshot(researcher, shots, "phone-config-approval")

    assert api(researcher, "POST", "/api/training/start", {"environment": "hers"})[0] == 202
    researcher_context.close()
