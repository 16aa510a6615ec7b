"""Configuration tabs: a plugin's options appear without UI code; invalid values come back beside their field and
nothing is saved; valid changes are written atomically with their source."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from simpletuner.core.hookspecs import hookimpl
from simpletuner.core.options import option
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import TrackerSpec

from .conftest import Client, UiServer


@attrs.define(kw_only=True)
class FixtureTrackerOptions:
    fixture_tracker_url: str = option("http://127.0.0.1:9", help="Where the fixture tracker sends metrics.",
                                      section="validation", label="Fixture tracker URL")
    fixture_tracker_batch: int = option(8, help="Metrics per request.", section="validation", minimum=1)


class FixtureTrackerPlugin:
    @hookimpl
    def register_trackers(self, register):  # type: ignore[no-untyped-def]
        register(TrackerSpec(name="fixture-tracker", title="Fixture tracker", description="Used by a test.",
                             factory=lambda **kw: None, options=FixtureTrackerOptions))


@pytest.fixture
def plugin_ui(tmp_path: Path) -> Iterator[UiServer]:
    registry = Registry()
    registry.register_plugin(FixtureTrackerPlugin(), "fixture-tracker")
    server = UiServer(tmp_path / "ws", registry)
    yield server
    registry.unregister_plugin("fixture-tracker")
    server.database.close()


def test_plugin_options_appear_and_invalid_values_are_not_saved(plugin_ui: UiServer) -> None:
    admin = plugin_ui.admin()
    assert admin.post("/api/environments", {"name": "alpha", "example": "flux-lora"}).status_code == 201
    view = admin.get("/api/environments/alpha/config").json
    validation = next(s for s in view["sections"] if s["key"] == "validation")
    assert not [o for o in validation["options"] if o["owner"] == "tracker:fixture-tracker"], "not reported to"
    report_to = next(o for o in validation["options"] if o["key"] == "report_to")
    assert "fixture-tracker" in report_to["choices"]
    chosen = admin.patch("/api/environments/alpha/config", {"values": {"report_to": ["fixture-tracker"]}})
    assert chosen.status_code == 200, chosen.text
    view = admin.get("/api/environments/alpha/config").json
    validation = next(s for s in view["sections"] if s["key"] == "validation")
    mine = {o["key"]: o for o in validation["options"] if o["owner"] == "tracker:fixture-tracker"}
    assert mine["fixture_tracker_batch"]["minimum"] == 1
    assert mine["fixture_tracker_url"]["label"] == "Fixture tracker URL"
    assert view["values"]["fixture_tracker_batch"] == 8 and view["sources"]["fixture_tracker_batch"] == "default"

    config_file = plugin_ui.workspace.configs_dir / "alpha" / "config.json"
    before = config_file.read_bytes()
    bad = admin.patch("/api/environments/alpha/config", {"values": {"fixture_tracker_batch": 0, "lora_rank": "x"}})
    assert bad.status_code == 422
    assert bad.json["field_errors"]["fixture_tracker_batch"] == ["must be at least 1, got 0"]
    assert "lora_rank" in bad.json["field_errors"]
    assert config_file.read_bytes() == before

    good = admin.patch("/api/environments/alpha/config", {"values": {"fixture_tracker_batch": 32}})
    assert good.status_code == 200 and good.json["saved"] is True
    assert json.loads(config_file.read_text())["fixture_tracker_batch"] == 32
    after = admin.get("/api/environments/alpha/config").json
    assert after["values"]["fixture_tracker_batch"] == 32 and after["sources"]["fixture_tracker_batch"] == "env:alpha"
    html = admin.get("/config?env=alpha").text
    assert 'data-section="validation"' in html and "/static/config.js" in html


def test_memory_preset_applies_the_family_settings(plugin_ui: UiServer) -> None:
    admin = plugin_ui.admin()
    admin.post("/api/environments", {"name": "alpha", "example": "flux-lora"})
    presets = admin.get("/api/environments/alpha/presets").json
    assert [p["name"] for p in presets["presets"]] == ["light", "balanced", "aggressive", "offload"]
    applied = admin.post("/api/environments/alpha/presets", {"preset": "aggressive"})
    assert applied.status_code == 200, applied.text
    written = json.loads((plugin_ui.workspace.configs_dir / "alpha" / "config.json").read_text())
    aggressive = presets["presets"][2]["settings"]
    assert all(written[k] == v for k, v in aggressive.items())
    viewer = plugin_ui.user(admin, "vera", ["viewer"])
    assert viewer.patch("/api/environments/alpha/config", {"values": {"lora_rank": 4}}).status_code == 403
    assert viewer.get("/api/environments/alpha/config").status_code == 200


def test_only_the_options_of_the_chosen_plugins_apply(ui: UiServer) -> None:
    """Trackers, publishers, the validation method and the executor show their options once chosen; options of
    data backends (set per dataset) never show; an option the environment's file sets always shows."""
    admin = ui.admin()
    assert admin.post("/api/environments", {"name": "chosen", "example": "flux-lora"}).status_code == 201

    def owners() -> set[str]:
        view = admin.get("/api/environments/chosen/config").json
        return {o["owner"] for s in view["sections"] for o in s["options"]}

    before = owners()
    assert not {o for o in before if o.startswith(("tracker:wandb", "executor:ray", "data_backend:",
                                                   "validation_method:external-script"))}, before
    changed = admin.patch("/api/environments/chosen/config", {"values": {
        "report_to": ["wandb"], "validation_method": "external-script", "executor": "ray"}})
    assert changed.status_code == 200, changed.text
    after = owners()
    assert {"tracker:wandb", "validation_method:external-script", "executor:ray"} <= after
    assert not any(o.startswith("data_backend:") for o in after)

    config_file = ui.workspace.configs_dir / "chosen" / "config.json"
    raw = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**raw, "report_to": [], "wandb_entity": "team"}))
    view = admin.get("/api/environments/chosen/config").json
    keys = {o["key"] for s in view["sections"] for o in s["options"]}
    assert "wandb_entity" in keys and "wandb_mode" not in keys  # set in the file: shown, so it can be removed


def test_an_environment_shows_only_its_own_familys_options_and_no_login_settings(admin: Client) -> None:
    assert admin.post("/api/environments", {"name": "fluxy", "example": "flux-lora"}).status_code == 201
    view = admin.get("/api/environments/fluxy/config").json
    owners = {o["owner"] for s in view["sections"] for o in s["options"]}
    assert "model_family:flux" in owners
    assert not {"model_family:sana", "model_family:pixart"} & owners
    assert not any(owner.startswith("auth_provider:") for owner in owners)
    changed = admin.patch("/api/environments/fluxy/config",
                          {"values": {"model_family": "sana"}, "unset": ["model_flavour"]})
    assert changed.status_code == 200, changed.text
    owners = {o["owner"] for s in admin.get("/api/environments/fluxy/config").json["sections"] for o in s["options"]}
    assert "model_family:sana" in owners and "model_family:flux" not in owners
