"""A job's validation images as the API lists them: each with its prompt, seed and size from its PNG text chunks, and
only files inside the job's own run folder (a path through ``..`` or a symbolic link out of it is neither listed nor
opened)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from simpletuner.ui.jobs.models import Job
from simpletuner.ui.jobs.queue import record_event

from .conftest import Client, UiServer

pytestmark = pytest.mark.timeout(60)


def _png(path: Path, **text: str) -> Path:
    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    Image.new("RGB", (48, 32), "red").save(path, pnginfo=info)
    return path


def test_validation_images_carry_their_prompts_and_stay_in_the_run_folder(ui: UiServer, admin: Client,
                                                                         tmp_path: Path) -> None:
    run_dir = tmp_path / "output" / "run"
    (run_dir / "validation").mkdir(parents=True)
    inside = _png(run_dir / "validation" / "castle-step000010-seed7-48x32.png", name="castle",
                  prompt="a castle on a hill", seed="7", steps="20", guidance="4.0")
    plain = _png(run_dir / "validation" / "plain.png")  # e.g. from an external validation script
    outside = _png(tmp_path / "elsewhere.png", prompt="not this job's")
    (run_dir / "validation" / "link.png").symlink_to(outside)
    job = Job.create(environment="env", status="completed", output_dir=str(run_dir.parent), run_dir=str(run_dir),
                     created_at=1.0, ended_at=2.0)
    record_event(job.id, "validation", 5.0, step=10, images=[
        str(inside), str(plain), str(run_dir / ".." / "elsewhere.png"), str(run_dir / "validation" / "link.png"),
        str(outside)])
    listed = admin.get(f"/api/jobs/{job.id}").json["outputs"]["validation_images"]
    assert [image["path"] for image in listed] == [str(inside), str(plain)]
    first, second = listed
    assert first | {"name": "castle", "prompt": "a castle on a hill", "seed": "7", "steps": "20", "guidance": "4.0",
                    "width": 48, "height": 32, "step": 10} == first
    assert "prompt" not in second and second["width"] == 48
    assert admin.get(first["url"]).status_code == 200
