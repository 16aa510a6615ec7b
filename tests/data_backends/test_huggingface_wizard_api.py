"""The dataset wizard's API with the huggingface backend: its options listed, a local dataset's rows previewed with
their captions, and a dataset_name outside the allowed folders refused before anything is read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hf_helpers import rows, use_datasets_cache, write_parquet
from test_s3_wizard_api import Admin

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def admin(tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Admin]:
    use_datasets_cache(monkeypatch, tmp_path / "hf-datasets-cache")
    server = Admin(tmp_path / "ws", s3_endpoint)
    yield server
    server.database.close()


def test_the_wizard_previews_rows_of_a_local_dataset(admin: Admin) -> None:
    backends = {b["name"]: b for b in admin.call("GET", "/api/datasets/backends").json["backends"]}
    options = {o["key"]: o for o in backends["huggingface"]["options"]}
    assert backends["huggingface"]["local_paths"] is False
    assert options["dataset_name"]["trust"] == "path" and options["caption_column"]["default"] == ["text"]

    write_parquet(admin.workspace.datasets_dir / "pets", rows(3))
    request = {"type": "huggingface", "options": {"dataset_name": "datasets/pets", "caption_column": "text",
                                                  "fallback_caption_column": "meta.alt"}}
    tested = admin.call("POST", "/api/datasets/remote/test", request)
    assert tested.status_code == 200, tested.text
    folder = admin.workspace.datasets_dir / "pets"
    assert tested.json["location"] == f"huggingface dataset {folder} (split train)"
    scan = admin.call("POST", "/api/datasets/remote/scan", {**request, "resolution": 128, "resolution_type": "pixel",
                                                             "caption_strategy": "huggingface"})
    assert scan.status_code == 200, scan.text
    assert (scan.json["images"], scan.json["usable"], scan.json["no_caption"]) == (3, 3, 0)
    assert {p["image"]: p["caption"] for p in scan.json["preview"]} == {
        "row-0.png": "a square number 0", "row-1.png": "a square number 1", "row-2.png": "nested caption 2"}


def test_a_dataset_outside_the_allowed_folders_is_refused(admin: Admin, tmp_path: Path) -> None:
    write_parquet(tmp_path / "elsewhere", rows(1))
    answer = admin.call("POST", "/api/datasets/remote/scan", {
        "type": "huggingface", "options": {"dataset_name": str(tmp_path / "elsewhere")}, "resolution": 128,
        "caption_strategy": "huggingface"})
    assert answer.status_code == 403
    assert "options.dataset_name" in answer.json["description"] and "outside the allowed roots" in \
        answer.json["description"]
