"""The wizard's review: each changed option with its effective value and where it comes from, before and after
(option default, the model flavour, the default environment, this environment), never a secret."""

from __future__ import annotations

import json
from typing import Any

from .conftest import Client, UiServer


def review(client: Client, values: dict[str, Any], env: str = "alpha") -> dict[str, dict[str, Any]]:
    result = client.post(f"/api/environments/{env}/config/validate", {"values": values})
    assert result.status_code in (200, 422), result.text
    return {row["key"]: row for row in result.json["diff"]}


def test_review_shows_effective_values_and_their_sources(ui: UiServer, admin: Client) -> None:
    configs = ui.workspace.root / "configs"
    assert admin.post("/api/environments", {"name": "alpha", "example": "flux-lora"}).status_code == 201
    (configs / "default").mkdir()
    (configs / "default" / "config.json").write_text(json.dumps({"lora_alpha": 8, "seed": 7}))
    own_before = (configs / "alpha" / "config.json").read_text()

    rows = review(admin, {"push_to_hub": True, "hub_private": True, "seed": 7, "lora_alpha": 4,
                          "model_flavour": "schnell", "learning_rate": 0.0001})
    # Set to what the option's default already is: only the source changes.
    assert rows["hub_private"] == {"key": "hub_private", "old": True, "old_source": "default",
                                 "new": True, "new_source": "env:alpha"}
    assert rows["push_to_hub"]["old"] is False and rows["push_to_hub"]["old_source"] == "default"
    assert (rows["push_to_hub"]["new"], rows["push_to_hub"]["new_source"]) == (True, "env:alpha")
    # From the default environment (alpha merges it) to this environment's own file.
    assert (rows["seed"]["old"], rows["seed"]["old_source"]) == (7, "env:default")
    assert (rows["seed"]["new"], rows["seed"]["new_source"]) == (7, "env:alpha")
    assert (rows["lora_alpha"]["old"], rows["lora_alpha"]["new"]) == (8, 4)
    # A flavour's pre-enabled setting appears although the wizard never sent it.
    tokens = rows["flux_t5_max_tokens"]
    assert (tokens["old_source"], tokens["new"], tokens["new_source"]) == ("default", 256, "flavour:flux/schnell")
    assert tokens["old"] != 256
    # Unchanged value and source: no row.
    assert "learning_rate" not in rows and "resolution" not in rows
    assert (configs / "alpha" / "config.json").read_text() == own_before  # nothing written


def test_review_of_a_broken_file_falls_back_to_the_file_and_defaults(ui: UiServer, admin: Client) -> None:
    assert admin.post("/api/environments", {"name": "alpha", "example": "flux-lora"}).status_code == 201
    path = ui.workspace.root / "configs" / "alpha" / "config.json"
    broken = json.loads(path.read_text()) | {"lora_rank": "sixteen"}
    path.write_text(json.dumps(broken))
    result = admin.post("/api/environments/alpha/config/validate", {"values": {"lora_rank": 8}})
    assert result.status_code == 200, result.text
    rows = {row["key"]: row for row in result.json["diff"]}
    assert (rows["lora_rank"]["old"], rows["lora_rank"]["old_source"]) == ("sixteen", "env:alpha")
    assert (rows["lora_rank"]["new"], rows["lora_rank"]["new_source"]) == (8, "env:alpha")


def test_review_never_echoes_a_secret(ui: UiServer, admin: Client) -> None:
    assert admin.post("/api/environments", {"name": "alpha", "example": "flux-lora"}).status_code == 201
    result = admin.post("/api/environments/alpha/config/validate",
                        {"values": {"aws_secret_access_key": "s3cret-value-123"}})
    assert "s3cret-value-123" not in result.text
    rows = {row["key"]: row for row in result.json["diff"]}
    assert rows["aws_secret_access_key"] == {"key": "aws_secret_access_key", "old": None, "old_source": "default",
                                          "new": None, "new_source": "env:alpha", "secret": True}
    assert result.json["config"]["aws_secret_access_key"] is None
