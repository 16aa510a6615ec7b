"""A SimpleTuner checkout's environments through the HTTP API: listed with '+' names and unloadable folders, opened
with SimpleTuner's family names, and keys or datasets that would change what is trained refused by name."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
import simpletuner_configs as st

from .conftest import Client, UiServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def configs(ui: UiServer) -> Path:
    return st.simpletuner_checkout(ui.workspace)


def config_of(admin: Client, name: str) -> dict:
    result = admin.get(f"/api/environments/{quote(name, safe='')}/config")
    assert result.status_code == 200, result.text
    return result.json


def test_the_checkout_is_listed_with_what_cannot_be_loaded(admin: Client, configs: Path) -> None:
    st.write_environment(configs, "my pixart", st.PIXART_CONFIG)
    data = admin.get("/api/environments").json
    assert [e["name"] for e in data["environments"]] == sorted(
        [st.CONTROLNET, st.FLUX, st.PIXART, st.REGULARISATION, st.SANA, st.TREAD])
    assert [(f["name"], "rename the folder" in f["error"]) for f in data["unloadable"]] == [("my pixart", True)]
    assert data["configs_dir"] == str(configs)


@pytest.mark.parametrize("name", [st.FLUX, st.SANA, st.PIXART])
def test_documented_environments_open_without_errors(admin: Client, configs: Path, name: str) -> None:
    view = config_of(admin, name)
    assert (view["field_errors"], view["errors"]) == ({}, [])


def test_a_family_named_by_its_simpletuner_name_shows_its_options(admin: Client, configs: Path) -> None:
    view = config_of(admin, st.PIXART)
    keys = {option["key"] for section in view["sections"] for option in section["options"]}
    assert "pixart_max_tokens" in keys and "flux_guidance_mode" not in keys
    assert view["sources"]["pixart_max_tokens"] == "default"


def test_refused_keys_are_field_errors_naming_the_way_forward(admin: Client, configs: Path) -> None:
    view = config_of(admin, st.TREAD)
    assert sorted(view["field_errors"]) == ["tread_config"]
    assert "asks for TREAD token routing" in view["field_errors"]["tread_config"][0]

    # a save keeps the refusal until the key is fixed in the file
    refused = admin.patch(f"/api/environments/{st.TREAD}/config", {"values": {"lora_rank": 8}})  # '+' as written
    assert refused.status_code == 422 and sorted(refused.json["field_errors"]) == ["tread_config"]


def test_saving_keeps_simpletuner_keys_as_written(admin: Client, configs: Path) -> None:
    saved = admin.patch(f"/api/environments/{quote(st.FLUX, safe='')}/config", {"values": {"lora_rank": 8}})
    assert saved.status_code == 200, saved.text
    written = json.loads((configs / st.FLUX / "config.json").read_text())
    assert written["--lora_rank"] == 8
    assert (written["--controlnet"], written["--flux_lora_target"]) == ("false", "all")


def test_saving_datasets_expands_placeholders_and_refuses_what_changes_training(ui: UiServer, admin: Client,
                                                                                configs: Path) -> None:
    url = f"/api/environments/{quote(st.PIXART, safe='')}/datasets"
    saved = admin.put(url, {"datasets": st.PIXART_DATASETS})  # its folder exists only once {model_family} expands
    assert saved.status_code == 200, saved.text
    sliding = [dict(st.PIXART_DATASETS[0], slider_strength=0.5), st.PIXART_DATASETS[1]]
    refused = admin.put(url, {"datasets": sliding})
    assert refused.status_code == 422
    assert any("slider_strength: 0.5 asks for slider training" in e for e in refused.json["errors"])
    # regularisation data against the config: this PixArt environment trains full rank, with no adapter to turn off
    regularised = [dict(st.PIXART_DATASETS[0], is_regularisation_data=True), st.PIXART_DATASETS[1]]
    refused = admin.put(url, {"datasets": regularised})
    assert refused.status_code == 422
    assert any("full-rank training has no adapter" in e for e in refused.json["errors"]), refused.json
