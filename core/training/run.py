"""One training run, start to finish, as a sequence of named stages (:mod:`~simpletuner.core.training.stages`):
prepare data → caches → model and adapter → accelerate → the loop (checkpoints, validation points) → final save →
validation → publishing.

Every step of the way is written to the run's event stream (:mod:`simpletuner.core.events`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.config.loading import LoadedEnvironment
from simpletuner.core.config.snapshot import write_run_snapshot
from simpletuner.core.events import EVENTS_FILE, EventWriter, Listener
from simpletuner.core.plugins import Registry
from simpletuner.core.publishing import Publishing
from simpletuner.core.scripts import HookScripts
from simpletuner.core.tracking import Tracking
from simpletuner.core.training import checkpoints as ckpt
from simpletuner.core.training import stages
from simpletuner.core.training.acceleration import build_accelerator
from simpletuner.core.training.attention import validation_backend
from simpletuner.core.training.caching_stage import record_in_turn, sum_over_processes
from simpletuner.core.training.compile import eager
from simpletuner.core.training.data import TrainingData
from simpletuner.core.training.loop import LoopState, StepMetrics, train_steps
from simpletuner.core.training.machine_checks import check_machine
from simpletuner.core.training.offload import GroupOffload
from simpletuner.core.training.resolve import TrainingSetupError, resolve_run
from simpletuner.core.training.run_folders import shared_run_folder
from simpletuner.core.training.saving import WeightSaver
from simpletuner.core.training.validation import Validator
from simpletuner.core.usage import output_kind, usage_code
from simpletuner.core.workspace import Workspace


@attrs.frozen
class TrainingResult:
    """Where a finished run left its outputs: ``output`` (the final model) inside ``run_dir``, the run's own folder
    under the configured ``output_dir``."""

    output: Path
    output_dir: Path
    run_dir: Path
    step: int
    encoder_calls: dict[str, int]


def train(loaded: LoadedEnvironment, workspace: Workspace, registry: Registry, *,
          listeners: list[Listener] | None = None, run_dir: Path | None = None) -> TrainingResult:
    """Run training for a loaded environment into a run folder of its own under ``output_dir``: ``run_dir`` when the
    caller created it (the server does, per job), else a new one (see
    :mod:`~simpletuner.core.training.run_folders`). Raises :class:`~simpletuner.core.errors.SimpleTunerError` for
    input problems (before heavy work wherever possible)."""
    resolved = resolve_run(loaded, workspace, registry)
    accelerator = build_accelerator(loaded.config.core, resolved.family,
                                    lambda p: workspace.resolve_config_path(p, loaded.environment.path))
    folder = shared_run_folder(accelerator, resolved.output_dir, loaded.environment.name, run_dir)
    events = EventWriter(folder / EVENTS_FILE if accelerator.is_main_process else None, listeners)
    step: int | None = None
    offload: GroupOffload | None = None
    try:
        if accelerator.is_main_process:
            write_run_snapshot(folder, loaded, registry)
        check_machine(loaded.config.core, accelerator.device)  # before any data or model is loaded
        offload = group_offload(loaded.config.core, accelerator,
                                lambda p: workspace.resolve_config_path(p, loaded.environment.path))
        run = stages.Run(loaded, workspace, registry, resolved, folder, accelerator, events, offload)
        result = _run_stages(run)
        step = result.step
        return result
    except BaseException as exc:
        events.failed(exc, step)
        raise
    finally:
        if offload is not None:
            offload.close()
        events.close()


def group_offload(core: Any, accelerator: Any, resolve_path: Any) -> GroupOffload | None:
    """The run's group offloading (None when off); refused across several processes, whose data-parallel wrapper
    needs every weight of its replica on its own GPU."""
    if core.enable_group_offload and accelerator.num_processes > 1:
        raise TrainingSetupError(f"enable_group_offload runs in a single process and this run has "
                                 f"{accelerator.num_processes}; train on one GPU, or shard the model with "
                                 "fsdp_enable / deepspeed_config instead")
    return GroupOffload.for_run(core, accelerator.device, resolve_path)


def _run_stages(run: stages.Run) -> TrainingResult:
    started = time.time()
    begun = stages.start(run)
    training_data = stages.data(run, begun)
    cached = stages.caches(run, begun, training_data)
    adapted = stages.model_and_adapter(run, cached.dtype)
    accelerated = stages.accelerate(run, begun, training_data, adapted)
    core, accelerator = run.core, run.accelerator
    run.events.emit("run_started", run_name=core.tracker_run_name, project_name=core.tracker_project_name,
                    model_family=run.resolved.spec.name,
                    model_flavour=run.family.flavour.name if run.family.flavour else None,
                    model_type=core.model_type, pretrained=run.resolved.pretrained,
                    output_dir=str(run.resolved.output_dir), run_dir=str(run.folder),
                    num_processes=accelerator.num_processes, total_steps=accelerated.total_steps,
                    steps_per_epoch=accelerated.steps_per_epoch,
                    resumed_from=str(begun.resume) if begun.resume else None, start_step=accelerated.start_step)
    hooks = RunHooks.open(run, begun, cached, adapted, accelerated)
    with hooks.tracking:
        step = train_steps(LoopState(
            accelerator=accelerator, family=run.family, model=accelerated.model, params=adapted.params,
            optimizer=accelerated.optimizer, scheduler=accelerated.scheduler, generator=accelerated.generator,
            data=training_data, core=core, batches_per_epoch=accelerated.batches_per_epoch,
            total_steps=accelerated.total_steps, start_step=accelerated.start_step, dtype=cached.dtype,
            empty_text=_empty_text(training_data)), hooks.on_step, hooks.after_step)
        accelerator.wait_for_everyone()
        encoder_calls = _record_ondemand(training_data, accelerator, cached.encoder_calls)
        if adapted.ema is not None:
            adapted.ema.copy_to(adapted.params)  # the final model is the moving average
        output = hooks.saver.final(run.folder, step)
        images = hooks.validate(step, None)
        published = hooks.publish(output, images, step)
    run.events.emit("finished", step=step, output=str(output), elapsed_s=round(time.time() - started, 3),
                    published=published, usage=_usage(run))
    return TrainingResult(output=output, output_dir=run.resolved.output_dir, run_dir=run.folder, step=step,
                          encoder_calls=encoder_calls)


def _record_ondemand(training_data: TrainingData, accelerator: Any, calls: dict[str, int]) -> dict[str, int]:
    """With latents encoded while training: each process notes what it wrote in the manifests, in turn; the
    encoder calls of the whole run (every process's)."""
    ondemand = training_data.ondemand
    if ondemand is None:
        return calls
    record_in_turn(accelerator, ondemand.record)
    [latents] = sum_over_processes(accelerator, [ondemand.calls])
    return {**calls, "latents": calls["latents"] + latents}


def _usage(run: stages.Run) -> str:
    """The code that loads the final model from the run folder (the job page shows it)."""
    core = run.core
    return usage_code(run.resolved.spec.usage, output_kind(core.model_type, core.lora_type),
                      base_model=run.resolved.pretrained, source=str(run.folder), settings=attrs.asdict(core),
                      component=run.family.trained_component)


def _empty_text(training_data: TrainingData) -> dict[str, Any] | None:
    return training_data.empty_text.store.read(training_data.empty_text.key)


@attrs.frozen
class RunHooks:
    """What the loop calls after each step, and what the run does at its end: trackers, checkpoints, validation,
    hook scripts and publishing, all opened before the first step."""

    run: stages.Run
    begun: stages.Start
    cached: stages.Cached
    adapted: stages.AdaptedModel
    accelerated: stages.Accelerated
    tracking: Tracking
    validator: Validator | None
    scripts: HookScripts
    publishing: Publishing | None
    writer: ckpt.CheckpointWriter
    saver: WeightSaver

    @classmethod
    def open(cls, run: stages.Run, begun: stages.Start, cached: stages.Cached, adapted: stages.AdaptedModel,
             accelerated: stages.Accelerated) -> RunHooks:
        """Start the trackers and publishers (on the main process) and everything the steps report to."""
        main, resume = run.is_main, begun.resume
        tracking = Tracking.start(run.config, run.registry, run.folder, resumed_step=accelerated.start_step,
                                  resumed_from=resume.parent if resume else None,
                                  on_event=run.events.forward) if main else Tracking({})
        validator = (Validator(run.config, begun.validation, run.events, tracking, run.folder)
                     if begun.validation is not None else None)
        scripts = HookScripts.from_config(run.config, on_event=run.events.forward, cwd=run.workspace.root)
        publishing = Publishing.start(run.config, run.registry, run.folder, on_event=run.events.forward,
                                      on_uploaded=scripts.after_upload) if main else None
        writer = ckpt.CheckpointWriter(run.folder, rank=run.accelerator.process_index, is_main=main,
                                       barrier=run.accelerator.wait_for_everyone,
                                       total_limit=run.core.checkpoints_total_limit)
        saver = WeightSaver(run.accelerator, accelerated.model, run.family, run.core, stages.training_metadata(run),
                            adapted.ema)
        return cls(run, begun, cached, adapted, accelerated, tracking, validator, scripts, publishing, writer, saver)

    def on_step(self, metrics: StepMetrics) -> None:
        """Report one optimizer step."""
        if self.run.is_main:
            self.run.events.emit("step", **attrs.asdict(metrics))
            self.tracking.log_scalars(metrics.step, metrics.scalars())

    def after_step(self, step: int) -> None:
        """EMA, and the checkpoint and validation points that fall on ``step`` (the last step has its own)."""
        core, total = self.run.core, self.accelerated.total_steps
        if self.adapted.ema is not None and step % core.ema_update_interval == 0:
            self.adapted.ema.step(self.adapted.params)
        checkpoint = None
        if core.checkpointing_steps and step % core.checkpointing_steps == 0 and step < total:
            checkpoint = self._checkpoint(step)
        if core.validation_steps and step % core.validation_steps == 0 and step < total:
            self.validate(step, checkpoint)

    def _checkpoint(self, step: int) -> Path:
        accelerated = self.accelerated
        checkpoint, pruned = self.saver.checkpoint(
            self.writer, step, optimizer=accelerated.optimizer, scheduler=accelerated.scheduler,
            generator=accelerated.generator, state={"global_step": step, "seed": self.begun.seed})
        if self.run.is_main:
            self.run.events.emit("checkpoint_saved", step=step, path=str(checkpoint), pruned=[str(p) for p in pruned])
            self.scripts.after_checkpoint(checkpoint, step)
            if self.publishing is not None:
                self.publishing.checkpoint(checkpoint, step)
        return checkpoint

    def _pipeline(self) -> Any:
        family, unwrapped = self.run.family, self.saver.unwrapped
        return family.validation_pipeline({**self.cached.components.get(self.cached.keep),
                                           family.trained_component: unwrapped})

    def validate(self, step: int, checkpoint: Path | None) -> list[Path]:
        """Run validation on the main process (the others wait); returns the images it made."""
        import torch

        images: list[Path] = []
        if self.validator is not None and self.run.is_main:
            unwrapped = self.saver.unwrapped
            unwrapped.eval()
            # validation renders another shape without gradients: compiled code would recompile for it
            with torch.no_grad(), eager(), validation_backend(unwrapped, self.run.core,
                                                             cuda=self.run.accelerator.device.type == "cuda"):
                result = self.validator.run(step, checkpoint, self._pipeline, self.run.resolved.spec.name)
            images = [Path(p) for p in result.get("images", [])]
            self.cached.components.park(self.cached.keep)
            unwrapped.train()
        self.run.accelerator.wait_for_everyone()
        return images

    def publish(self, output: Path, images: list[Path], step: int) -> dict[str, str]:
        """Publish the final model and wait for every background upload, command and validation to end."""
        published: dict[str, str] = {}
        if self.publishing is not None:
            self.publishing.final(stages.published_files(output, self.run.core), images, step)
            published = self.publishing.wait()
        self.scripts.wait()
        if self.validator is not None:
            self.validator.wait()
        return published
