"""The built-in trackers, read back from the files they write, and the fan-out that survives a failing tracker."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from PIL import Image

from simpletuner.core.hookspecs import hookimpl
from simpletuner.core.interfaces import RunInfo, Tracker
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import TrackerSpec
from simpletuner.core.tracking import Tracking
from simpletuner.trackers.local import LocalTrackerOptions
from simpletuner.trackers.local.tracker import JsonlTracker
from simpletuner.trackers.tensorboard import TensorBoardOptions
from simpletuner.trackers.tensorboard.tracker import TensorBoardTracker

from .wandb_records import history_rows, read_records, run_record


def run_info(output: Path, resumed_step: int = 0) -> RunInfo:
    return RunInfo(project_name="proj", run_name="run one", output_dir=output, config={"lr": 1e-4},
                   resumed_step=resumed_step)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_local_tracker_writes_json_lines_and_trims_on_resume(tmp_path: Path, images: Callable) -> None:
    out = tmp_path / "out"
    (cat,) = images("cat")
    tracker = JsonlTracker(LocalTrackerOptions())
    tracker.start(run_info(out))
    for step in (1, 2, 3):
        tracker.log_scalars(step, {"loss": 1.0 / step, "epoch": 1})
    tracker.log_scalars(3, {"grad_norm": float("nan")})
    tracker.log_images(3, {"cat": [cat]})
    tracker.finish("stopped")
    rows = read_jsonl(out / "metrics.jsonl")
    assert [(r["type"], r.get("step")) for r in rows] == [
        ("start", None), ("scalars", 1), ("scalars", 2), ("scalars", 3), ("scalars", 3), ("images", 3),
        ("finish", None)]
    assert rows[2]["values"] == {"loss": 0.5, "epoch": 1}
    assert rows[4]["values"] == {"grad_norm": None}
    assert rows[5]["images"] == {"cat": [str(cat)]}
    assert rows[-1]["status"] == "stopped"

    resumed = JsonlTracker(LocalTrackerOptions())
    resumed.start(run_info(out, resumed_step=2))
    resumed.log_scalars(3, {"loss": 0.3})
    resumed.finish("completed")
    rows = read_jsonl(out / "metrics.jsonl")
    assert [(r["type"], r.get("step")) for r in rows] == [
        ("start", None), ("scalars", 1), ("scalars", 2), ("start", None), ("scalars", 3), ("finish", None)]
    assert rows[4]["values"] == {"loss": 0.3}


def test_local_tracker_option_is_validated(load_config: Callable) -> None:
    from simpletuner.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\$\.local_metrics_file: give a file name"):
        load_config({"local_metrics_file": "metrics/"})


def test_tensorboard_scalars_and_images_read_back(tmp_path: Path, images: Callable) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "out"
    cat, dog = images("cat", "dog", size=(20, 10))
    tracker = TensorBoardTracker(TensorBoardOptions())
    tracker.start(run_info(out))
    for step in range(1, 5):
        tracker.log_scalars(step, {"loss": 1.0 / step, "lr": 1e-4 * step})
    tracker.log_images(4, {"a cat": [cat], "dog": [cat, dog]})
    tracker.finish("completed")

    log_dir = out / "logs" / "run_one"
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    loss = [(e.step, e.value) for e in acc.Scalars("loss")]
    assert [s for s, _ in loss] == [1, 2, 3, 4]
    assert [v for _, v in loss] == pytest.approx([1.0, 0.5, 1 / 3, 0.25])
    assert [e.value for e in acc.Scalars("lr")] == pytest.approx([1e-4, 2e-4, 3e-4, 4e-4])
    assert sorted(acc.Tags()["images"]) == ["validation/a_cat", "validation/dog/0", "validation/dog/1"]
    (image,) = acc.Images("validation/dog/1")
    assert (image.step, image.width, image.height) == (4, 20, 10)
    assert image.encoded_image_string == dog.read_bytes()

    # Resuming from step 2: the old attempt's steps 3 and 4 are discarded, the new step 3 is kept.
    resumed = TensorBoardTracker(TensorBoardOptions())
    resumed.start(run_info(out, resumed_step=2))
    resumed.log_scalars(3, {"loss": 0.9})
    resumed.finish("completed")
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    assert [(e.step, round(e.value, 6)) for e in acc.Scalars("loss")] == [(1, 1.0), (2, 0.5), (3, 0.9)]


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("offline_wandb")
def test_wandb_offline_run_holds_metrics_and_images_and_resume_continues_it(tmp_path: Path,
                                                                            images: Callable) -> None:
    from simpletuner.trackers.wandb import WandbOptions
    from simpletuner.trackers.wandb.tracker import WandbTracker

    out = tmp_path / "out"
    (cat,) = images("cat")
    tracker = WandbTracker(WandbOptions(wandb_tags=["test"]))
    tracker.start(run_info(out))
    tracker.log_scalars(1, {"loss": 0.5, "lr": 1e-4})
    tracker.log_scalars(2, {"loss": 0.25, "lr": 1e-4})
    tracker.log_images(2, {"a cat": [cat]})
    tracker.finish("completed")

    (run_file,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    records = read_records(run_file)
    run = run_record(records)
    assert (run.run_id, run.project, run.display_name, list(run.tags)) == (tracker.run_id, "proj", "run one",
                                                                          ["test"])
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["lr"] == 1e-4
    rows = history_rows(records)
    assert [(r["global_step"], r.get("loss")) for r in rows] == [(1, 0.5), (2, 0.25), (2, None)]
    image_row = rows[2]
    assert image_row["validation/a cat/captions"] == ["a cat"]
    (media,) = image_row["validation/a cat/filenames"]
    with Image.open(run_file.parent / "files" / media) as logged, Image.open(cat) as original:
        assert logged.size == original.size and logged.convert("RGB").tobytes() == original.convert("RGB").tobytes()

    resumed = WandbTracker(WandbOptions())
    resumed.start(run_info(out, resumed_step=2))
    resumed.log_scalars(3, {"loss": 0.125})
    resumed.finish("completed")
    assert resumed.run_id == tracker.run_id
    files = sorted((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2 and all(f.name == f"run-{tracker.run_id}.wandb" for f in files)
    newest = read_records(next(f for f in files if f != run_file))
    assert [(r["global_step"], r["loss"]) for r in history_rows(newest)] == [(3, 0.125)]

    # a resumed training run writes into a run folder of its own: the id comes from the folder it resumes
    moved = WandbTracker(WandbOptions())
    moved.start(attrs.evolve(run_info(tmp_path / "next", resumed_step=3), resumed_from=out))
    moved.finish("completed")
    assert moved.run_id == tracker.run_id
    assert (tmp_path / "next" / "wandb_run_id").read_text().strip() == tracker.run_id

    fresh = WandbTracker(WandbOptions())
    fresh.start(run_info(out))
    fresh.finish("completed")
    assert fresh.run_id != tracker.run_id


class ExplodingTracker(Tracker):
    """Fails at its second scalar call, like a tracker whose disk filled up."""

    calls: list[str] = []

    def start(self, run: RunInfo) -> None:
        self.calls.append("start")

    def log_scalars(self, step: int, values: object) -> None:
        self.calls.append(f"scalars {step}")
        if step >= 2:
            raise OSError(28, "No space left on device")

    def log_images(self, step: int, images: object) -> None:
        self.calls.append("images")

    def finish(self, status: str) -> None:
        self.calls.append("finish")


class ExplodingPlugin:
    @hookimpl
    def register_trackers(self, register):  # type: ignore[no-untyped-def]
        register(TrackerSpec(name="exploding", title="Exploding", description="Fails.",
                             factory=lambda options: ExplodingTracker()))
        register(TrackerSpec(name="unbuildable", title="Unbuildable", description="Cannot be built.",
                             factory=lambda options: (_ for _ in ()).throw(ImportError("no module named 'x'"))))


@pytest.fixture
def registry_with_broken_trackers(registry: Registry):  # type: ignore[no-untyped-def]
    registry.register_plugin(ExplodingPlugin(), name="exploding-test-plugin")
    ExplodingTracker.calls = []
    yield registry
    registry.unregister_plugin("exploding-test-plugin")


def test_fan_out_reports_a_failing_tracker_once_and_keeps_the_others(
        tmp_path: Path, load_config: Callable, registry_with_broken_trackers: Registry) -> None:
    config = load_config({"report_to": "local,exploding,unbuildable", "tracker_run_name": "fan"},
                         registry_with_broken_trackers)
    events: list[dict] = []
    tracking = Tracking.start(config, registry_with_broken_trackers, tmp_path, on_event=events.append)
    assert tracking.names == ["local", "exploding"]
    for step in (1, 2, 3):
        tracking.log_scalars(step, {"loss": 0.1 * step})
    tracking.finish("completed")

    assert ExplodingTracker.calls == ["start", "scalars 1", "scalars 2"]
    assert [(e["event"], e["tracker"], e["during"]) for e in events] == [
        ("tracker_failed", "unbuildable", "create"), ("tracker_failed", "exploding", "log_scalars")]
    assert "No space left on device" in events[1]["error"]
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r.get("step") for r in rows if r["type"] == "scalars"] == [1, 2, 3]
    assert rows[0]["run"] == "fan"


def test_no_tracker_by_default(tmp_path: Path, load_config: Callable, registry: Registry) -> None:
    tracking = Tracking.start(load_config({}), registry, tmp_path)
    assert tracking.names == []
    tracking.log_scalars(1, {"loss": 1.0})
    tracking.finish("completed")
    assert list(tmp_path.iterdir()) == []
