"""One training run, start to finish: check → scan datasets → fill caches → free encoders → load and adapt the
transformer → accelerate → train with checkpoints and validation → save the final model.

Every step of the way is written to the run's event stream (:mod:`simpletuner.core.events`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.config.loading import LoadedEnvironment
from simpletuner.core.events import EVENTS_FILE, EventWriter, Listener
from simpletuner.core.plugins import Registry
from simpletuner.core.publishing import Publishing
from simpletuner.core.scripts import HookScripts
from simpletuner.core.tracking import Tracking
from simpletuner.core.training import checkpoints as ckpt
from simpletuner.core.training.acceleration import build_accelerator, is_sharded
from simpletuner.core.training.adapter import attach_adapter, load_trained_state_dict, prepare_trainable
from simpletuner.core.training.caching_stage import fill_caches
from simpletuner.core.training.components import Components
from simpletuner.core.training.loop import LoopState, StepMetrics, train_steps
from simpletuner.core.training.lycoris import LYCORIS_CONFIG_FILE
from simpletuner.core.training.optim import build_optimizer, build_scheduler
from simpletuner.core.training.outputs import read_lora
from simpletuner.core.training.prepare import prepare_data
from simpletuner.core.training.resolve import ResolvedRun, TrainingSetupError, resolve_run
from simpletuner.core.training.run_folders import latest_checkpoint, shared_run_folder
from simpletuner.core.training.sampler import steps_per_epoch
from simpletuner.core.training.saving import EMA_FILE, WeightSaver, restore_sharded_state, resume_weights
from simpletuner.core.training.validation import Validator, validation_enabled
from simpletuner.core.workspace import Workspace

_DTYPES = {"no": "float32", "bf16": "bfloat16", "fp16": "float16"}


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
    main = accelerator.is_main_process
    run = shared_run_folder(accelerator, resolved.output_dir, loaded.environment.name, run_dir)
    events = EventWriter(run / EVENTS_FILE if main else None, listeners)
    step: int | None = None
    try:
        result = _train(loaded, workspace, registry, resolved, run, accelerator, events)
        step = result.step
        return result
    except BaseException as exc:
        events.emit("failed", step=step, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                    error_type=type(exc).__name__)
        raise
    finally:
        events.close()


def _train(loaded: LoadedEnvironment, workspace: Workspace, registry: Registry, resolved: ResolvedRun, run: Path,
           accelerator: Any, events: EventWriter) -> TrainingResult:
    import torch

    config, core, family = loaded.config, loaded.config.core, resolved.family
    started = time.time()
    seed = core.seed if core.seed is not None else int(torch.randint(0, 2**31 - 1, (1,)).item())
    from accelerate.utils import set_seed

    set_seed(seed)  # Python, NumPy and torch: the LoRA's initial weights and dropout follow the seed
    resume = ckpt.resolve_resume(lambda: latest_checkpoint(resolved.output_dir, loaded.environment.name),
                                 core.resume_from_checkpoint,
                                 lambda p: workspace.resolve_config_path(p, loaded.environment.path))
    data = prepare_data(loaded, workspace, registry, resolved, accelerator.num_processes, seed, events)

    dtype = getattr(torch, _DTYPES[accelerator.mixed_precision])
    sources = {"default": resolved.pretrained, "vae": resolved.vae_source}
    components = Components(family, sources, dtype, accelerator.device)
    calls = fill_caches(data, family, components, config, registry, events, accelerator)
    validator = Validator(config, registry, events, None, run) if validation_enabled(config) else None
    keep = [n for n in family.components if n != family.trained_component] if validator else []
    components.park(keep)
    components.free([n for n in components.loaded if n not in keep])

    transformer = family.load_components(resolved.pretrained, dtype=dtype, device=accelerator.device,
                                         names=[family.trained_component])[family.trained_component]
    if core.base_model_precision != "no_change":
        quantizer_spec = registry.quantizer_for(core.base_model_precision)
        assert quantizer_spec is not None, "config check guarantees an installed quantizer"
        quantizer = quantizer_spec.build(config.options_for(quantizer_spec))
        quantizer.quantize(transformer, core.base_model_precision, exclude=family.quantization_exclusions)
    try:
        attach_adapter(transformer, family, core, loaded.lycoris_config)
    except ValueError as exc:
        raise TrainingSetupError(str(exc)) from None
    if core.model_type == "lora" and core.init_lora:
        init_path = workspace.resolve_config_path(core.init_lora, loaded.environment.path)
        if not init_path.is_file():
            raise TrainingSetupError(f"init_lora {str(init_path)!r} is not a file; give a LoRA safetensors file")
        load_trained_state_dict(transformer, read_lora(init_path, family.trained_component)[0], core)
    params = prepare_trainable(transformer, core)
    ema = None
    if core.use_ema:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(params, decay=core.ema_decay, foreach=True)
    if core.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()

    batches = data.planner.batches_per_epoch()
    per_epoch = steps_per_epoch(batches, core.gradient_accumulation_steps)
    total = core.max_train_steps or core.num_train_epochs * per_epoch
    optimizer = build_optimizer(params, core)
    scheduler = build_scheduler(optimizer, core, total)
    generator = torch.Generator(device=accelerator.device).manual_seed(seed + accelerator.process_index)
    start_step = 0
    if resume is not None:
        load_trained_state_dict(transformer, resume_weights(resume, core, family.trained_component), core)
        start_step = int(ckpt.load_state(resume)["global_step"])
        ckpt.load_rng(resume, accelerator.process_index, generator)
        if ema is not None:
            ckpt.load_ema(resume / EMA_FILE, ema)
    model, optimizer = accelerator.prepare(transformer, optimizer)
    if resume is not None:
        # after prepare: sharded optimizer state only fits the prepared (sharded) parameters
        ckpt.load_optimizer_and_scheduler(resume, None if is_sharded(accelerator) else optimizer, scheduler)
        restore_sharded_state(accelerator, resume)

    events.emit("run_started", run_name=core.tracker_run_name, project_name=core.tracker_project_name,
                model_family=resolved.spec.name, model_flavour=family.flavour.name if family.flavour else None,
                model_type=core.model_type, pretrained=resolved.pretrained, output_dir=str(resolved.output_dir),
                run_dir=str(run), num_processes=accelerator.num_processes, total_steps=total, steps_per_epoch=per_epoch,
                resumed_from=str(resume) if resume else None, start_step=start_step)
    tracking = Tracking.start(config, registry, run, resumed_step=start_step,
                              resumed_from=resume.parent if resume else None,
                              on_event=events.forward) if accelerator.is_main_process else Tracking({})
    if validator is not None:
        validator.tracking = tracking
    scripts = HookScripts.from_config(config, on_event=events.forward, cwd=workspace.root)
    publishing = Publishing.start(config, registry, run, on_event=events.forward,
                                  on_uploaded=scripts.after_upload) if accelerator.is_main_process else None
    writer = ckpt.CheckpointWriter(run, rank=accelerator.process_index,
                                   is_main=accelerator.is_main_process, barrier=accelerator.wait_for_everyone,
                                   total_limit=core.checkpoints_total_limit)
    saver = WeightSaver(accelerator, model, family, core, _training_metadata(loaded, resolved), ema)
    unwrapped = saver.unwrapped

    def pipeline() -> Any:
        return family.validation_pipeline({**components.get(keep), family.trained_component: unwrapped})

    def validate(step: int, checkpoint: Path | None) -> list[Path]:
        images: list[Path] = []
        if validator is not None and accelerator.is_main_process:
            unwrapped.eval()
            with torch.no_grad():
                result = validator.run(step, checkpoint, pipeline, resolved.spec.name)
            images = [Path(p) for p in result.get("images", [])]
            components.park(keep)
            unwrapped.train()
        accelerator.wait_for_everyone()
        return images

    def on_step(metrics: StepMetrics) -> None:
        if accelerator.is_main_process:
            events.emit("step", **attrs.asdict(metrics))
            tracking.log_scalars(metrics.step, metrics.scalars())

    def after_step(step: int) -> None:
        if ema is not None:
            ema.step(params)
        checkpoint = None
        if core.checkpointing_steps and step % core.checkpointing_steps == 0 and step < total:
            checkpoint, pruned = saver.checkpoint(writer, step, optimizer=optimizer, scheduler=scheduler,
                                                  generator=generator, state={"global_step": step, "seed": seed})
            if accelerator.is_main_process:
                events.emit("checkpoint_saved", step=step, path=str(checkpoint), pruned=[str(p) for p in pruned])
                scripts.after_checkpoint(checkpoint, step)
                if publishing is not None:
                    publishing.checkpoint(checkpoint, step)
        if core.validation_steps and step % core.validation_steps == 0 and step < total:
            validate(step, checkpoint)

    state = LoopState(accelerator=accelerator, family=family, model=model, params=params, optimizer=optimizer,
                      scheduler=scheduler, generator=generator, data=data, core=core, batches_per_epoch=batches,
                      total_steps=total, start_step=start_step, dtype=dtype,
                      empty_text=data.empty_text.store.read(data.empty_text.key))
    with tracking:
        step = train_steps(state, on_step, after_step)
        accelerator.wait_for_everyone()
        if ema is not None:
            ema.copy_to(params)  # the final model is the moving average
        output = saver.final(run, step)
        images = validate(step, None)
        published: dict[str, str] = {}
        if publishing is not None:
            publishing.final(_published_files(output, core), images, step)
            published = publishing.wait()
        scripts.wait()
        if validator is not None:
            validator.wait()
    events.emit("finished", step=step, output=str(output), elapsed_s=round(time.time() - started, 3),
                published=published)
    return TrainingResult(output=output, output_dir=resolved.output_dir, run_dir=run, step=step,
                          encoder_calls=calls)


def _published_files(output: Path, core: Any) -> list[Path]:
    """The final model's files: the LoRA file (with a LyCORIS config beside it) or the full component's folder."""
    files = [output]
    lycoris = output.parent / LYCORIS_CONFIG_FILE
    if core.model_type == "lora" and core.lora_type == "lycoris" and lycoris.is_file():
        files.append(lycoris)
    return files


def _training_metadata(loaded: LoadedEnvironment, resolved: ResolvedRun) -> dict[str, Any]:
    family = resolved.family
    return {"base_model": resolved.pretrained, "model_family": resolved.spec.name,
            "model_flavour": family.flavour.name if family.flavour else None,
            "config": loaded.config.to_file_dict()}
