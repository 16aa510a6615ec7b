"""Environments over HTTP with SimpleTuner's folder names ('+', written literally or percent-encoded in the URL), and
folders that cannot be used as environments, listed with the reason."""

from __future__ import annotations

import io
import json
import zipfile
from urllib.parse import quote

import pytest

from .conftest import Client, UiServer

pytestmark = pytest.mark.timeout(120)


def listing(client: Client) -> dict:
    result = client.get("/api/environments")
    assert result.status_code == 200, result.text
    return result.json


@pytest.mark.parametrize("encode", [False, True], ids=["literal", "percent-encoded"])
def test_every_route_takes_a_name_with_plus(ui: UiServer, admin: Client, encode: bool) -> None:
    def url(name: str) -> str:
        return "/api/environments/" + (quote(name, safe="") if encode else name)

    assert admin.post("/api/environments", {"name": "flux.peft-lora+TREAD"}).status_code == 201
    config = admin.get(url("flux.peft-lora+TREAD") + "/config")
    assert config.status_code == 200, config.text
    assert admin.post(url("flux.peft-lora+TREAD") + "/copy", {"name": "flux+copy"}).status_code == 201
    assert admin.patch(url("flux+copy"), {"name": "flux+renamed"}).status_code == 200
    exported = admin.get(url("flux+renamed") + "/export")
    assert exported.status_code == 200
    assert zipfile.ZipFile(io.BytesIO(exported.content)).namelist() == ["flux+renamed/config.json"]
    assert admin.get(url("flux+renamed") + "/datasets").status_code == 200
    assert admin.put("/api/active-environment", {"name": "flux+renamed"}).json == {
        "name": "flux+renamed"}
    assert admin.delete(url("flux+renamed")).status_code == 204
    assert [e["name"] for e in listing(admin)["environments"]] == ["flux.peft-lora+TREAD"]
    assert (ui.workspace.configs_dir / "flux.peft-lora+TREAD" / "config.json").is_file()


def test_unloadable_folders_are_listed_with_their_error(ui: UiServer, admin: Client) -> None:
    configs = ui.workspace.configs_dir
    for name, text in (("good+one", "{}"), ("broken", "[1, 2]"), ("two words", "{}"), ("examples/nested", "{}")):
        (configs / name).mkdir(parents=True)
        (configs / name / "config.json").write_text(text)

    data = listing(admin)
    environments = {e["name"]: e for e in data["environments"]}
    assert sorted(environments) == ["broken", "good+one"]
    assert environments["good+one"]["error"] is None
    assert environments["broken"]["error"] == "$: expected a JSON object of option names to values"
    unloadable = {f["name"]: f["error"] for f in data["unloadable"]}
    assert sorted(unloadable) == ["examples/nested", "two words"]
    assert "may use letters" in unloadable["two words"] and "rename the folder" in unloadable["two words"]
    assert "nested in a folder" in unloadable["examples/nested"]
    # an unloadable folder is no environment: its name is refused, not looked up elsewhere
    refused = admin.get("/api/environments/" + quote("two words") + "/config")
    assert refused.status_code == 400 and "may use letters" in json.loads(refused.text)["description"]
