"""The stages of a training run, each a function from what the earlier stages produced to a frozen result.

prepare data → caches → model and adapter → accelerate → (the loop, in :mod:`~simpletuner.core.training.run`) →
final save → validation → publishing. A stage builds its result whole: nothing is created half-way and completed
later, so each stage can be called and tested on its own with the results it needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from simpletuner.core.config.loading import LoadedEnvironment
from simpletuner.core.events import EventWriter
from simpletuner.core.interfaces import ModelFamily, ValidationMethod
from simpletuner.core.plugins import Registry
from simpletuner.core.training import checkpoints as ckpt
from simpletuner.core.training.acceleration import is_sharded, steps_optimizer_on_cpu
from simpletuner.core.training.adapter import attach_adapter, load_trained_state_dict, prepare_trainable
from simpletuner.core.training.attention import apply_training_backend
from simpletuner.core.training.caching_stage import fill_caches
from simpletuner.core.training.checkpointing import enable_checkpointing
from simpletuner.core.training.compile import compile_model
from simpletuner.core.training.components import Components
from simpletuner.core.training.data import TrainingData
from simpletuner.core.training.fp8 import convert_to_fp8
from simpletuner.core.training.lycoris import LYCORIS_CONFIG_FILE
from simpletuner.core.training.offload import GroupOffload, keep_saved_weights, offloads_trained_model, trainable_to
from simpletuner.core.training.optim import build_optimizer, build_scheduler
from simpletuner.core.training.outputs import lora_layout_file, read_lora
from simpletuner.core.training.prepare import prepare_data
from simpletuner.core.training.resolve import ResolvedRun, TrainingSetupError
from simpletuner.core.training.run_folders import latest_checkpoint
from simpletuner.core.training.sampler import steps_per_epoch
from simpletuner.core.training.saving import EMA_FILE, restore_sharded_state, resume_weights
from simpletuner.core.training.validation import open_validation_method
from simpletuner.core.workspace import Workspace

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator
    from diffusers.training_utils import EMAModel

    from simpletuner.core.config.core_options import CoreOptions
    from simpletuner.core.config.schema import TrainingConfig

_DTYPES = {"no": "float32", "bf16": "bfloat16", "fp16": "float16"}


@attrs.frozen
class Run:
    """What a run is given: the loaded environment, where it runs and writes, and its accelerator and events."""

    loaded: LoadedEnvironment
    workspace: Workspace
    registry: Registry
    resolved: ResolvedRun
    folder: Path
    accelerator: Accelerator
    events: EventWriter
    #: Group offloading of frozen weights (``enable_group_offload``); None when off.
    offload: GroupOffload | None = None

    @property
    def config(self) -> TrainingConfig:
        """The run's configuration."""
        return self.loaded.config

    @property
    def core(self) -> CoreOptions:
        """The run's core options."""
        return self.loaded.config.core

    @property
    def family(self) -> ModelFamily:
        """The run's model family."""
        return self.resolved.family

    @property
    def is_main(self) -> bool:
        """Whether this process writes files, trackers and events."""
        return bool(self.accelerator.is_main_process)

    def resolve_path(self, value: str) -> Path:
        """A path from the config, resolved as the config loader does."""
        return self.workspace.resolve_config_path(value, self.loaded.environment.path)


@attrs.frozen
class Start:
    """The run's seed, the checkpoint it resumes (None for a fresh run) and its validation method (built before
    any heavy work, so a misconfigured one fails at once)."""

    seed: int
    resume: Path | None
    validation: ValidationMethod | None


def start(run: Run) -> Start:
    """Seed every random generator, find the checkpoint to resume and open the validation method."""
    import torch
    from accelerate.utils import set_seed

    core = run.core
    seed = core.seed if core.seed is not None else int(torch.randint(0, 2**31 - 1, (1,)).item())
    set_seed(seed)  # Python, NumPy and torch: the LoRA's initial weights and dropout follow the seed
    resume = ckpt.resolve_resume(lambda: latest_checkpoint(run.resolved.output_dir, run.loaded.environment.name),
                                 core.resume_from_checkpoint, run.resolve_path)
    return Start(seed=seed, resume=resume, validation=open_validation_method(run.config, run.registry))


def data(run: Run, begun: Start) -> TrainingData:
    """Scan the datasets, key their caches and plan the batches."""
    return prepare_data(run.loaded, run.workspace, run.registry, run.resolved, run.accelerator.num_processes,
                        begun.seed, run.events, is_main=run.is_main)


@attrs.frozen
class Cached:
    """The filled caches: the components kept for validation (parked off the device) and the encoder calls made."""

    components: Components
    keep: list[str]
    encoder_calls: dict[str, int]
    dtype: torch.dtype


def caches(run: Run, begun: Start, training_data: TrainingData) -> Cached:
    """Fill the latent and text-embedding caches, then free every encoder validation does not need."""
    import torch

    family = run.family
    dtype = getattr(torch, _DTYPES[run.accelerator.mixed_precision])
    sources = {"default": run.resolved.pretrained, "vae": run.resolved.vae_source}
    components = Components(family, sources, dtype, run.accelerator.device, run.offload)
    calls = fill_caches(training_data, family, components, run.config, run.registry, run.events, run.accelerator)
    keep = [n for n in family.components if n != family.trained_component] if begun.validation else []
    components.park(keep)
    components.free([n for n in components.loaded if n not in keep])
    return Cached(components=components, keep=keep, encoder_calls=calls, dtype=dtype)


@attrs.frozen
class AdaptedModel:
    """The trained component, quantised if asked, with its adapter (or all weights) trainable."""

    transformer: torch.nn.Module
    params: list[torch.nn.Parameter]
    ema: EMAModel | None


def model_and_adapter(run: Run, dtype: torch.dtype) -> AdaptedModel:
    """Load the trained component, quantise it, attach the adapter (from ``init_lora`` if set) and the EMA, then
    apply the speed and memory options: float8 layers, offloading of the frozen base layers, gradient
    checkpointing, the attention backend and, last, compilation (so it sees the final module tree)."""
    core, family, registry, device = run.core, run.family, run.registry, run.accelerator.device
    offload = run.offload if offloads_trained_model(core) else None
    transformer = family.load_components(run.resolved.pretrained, dtype=dtype,
                                         device="cpu" if offload is not None else device,
                                         names=[family.trained_component])[family.trained_component]
    if core.base_model_precision != "no_change":
        quantizer_spec = registry.quantizer_for(core.base_model_precision)
        assert quantizer_spec is not None, "config check guarantees an installed quantizer"
        quantizer = quantizer_spec.build(run.config.options_for(quantizer_spec))
        quantizer.quantize(transformer, core.base_model_precision, exclude=family.quantization_exclusions)
    applied: dict[str, Any] = {}
    if core.fp8_training:
        applied["fp8_layers"] = convert_to_fp8(transformer, device, exclude=family.quantization_exclusions)
    if offload is not None:
        offload.apply(transformer, family.trained_component, trained=True)
        applied["offloaded"] = family.trained_component
    try:
        attach_adapter(transformer, family, core, run.loaded.lycoris_config)
    except ValueError as exc:
        raise TrainingSetupError(str(exc)) from None
    if offload is not None:
        trainable_to(transformer, device)
        keep_saved_weights(transformer)
    if core.model_type == "lora" and core.init_lora:
        init_path = run.resolve_path(core.init_lora)
        if not init_path.is_file():
            raise TrainingSetupError(f"init_lora {str(init_path)!r} is not a file; give a LoRA safetensors file")
        load_trained_state_dict(transformer, read_lora(init_path, family.trained_component)[0], core)
    params = prepare_trainable(transformer, core)
    ema = None
    if core.use_ema:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(params, decay=core.ema_decay, foreach=True)
    checkpointing = enable_checkpointing(transformer, core, offloaded=offload is not None)
    if checkpointing is not None and checkpointing.interval > 1:
        applied["checkpoint_interval"] = checkpointing.interval
    if apply_training_backend(transformer, core, cuda=device.type == "cuda"):
        applied["attention"] = core.attention_mechanism
    compiled = compile_model(transformer, family, core)
    if compiled:
        applied["compiled"] = {"backend": core.dynamo_backend, "modules": len(compiled),
                               "regional": core.dynamo_use_regional_compilation}
    if applied:
        run.events.emit("speedups", **applied)
    return AdaptedModel(transformer=transformer, params=params, ema=ema)


@attrs.frozen
class Accelerated:
    """The model and optimizer prepared by accelerate, the schedule, and where the loop starts."""

    model: torch.nn.Module
    optimizer: Any  # accelerate's wrapper of the torch optimizer
    scheduler: Any  # a torch learning-rate scheduler
    generator: torch.Generator
    batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    start_step: int


def accelerate(run: Run, begun: Start, training_data: TrainingData, adapted: AdaptedModel) -> Accelerated:
    """Build the optimizer and schedule, restore a resumed checkpoint's state and let accelerate prepare them."""
    import torch

    core, family, accelerator, resume = run.core, run.family, run.accelerator, begun.resume
    batches = training_data.planner.batches_per_epoch()
    per_epoch = steps_per_epoch(batches, core.gradient_accumulation_steps)
    total = core.max_train_steps or core.num_train_epochs * per_epoch
    optimizer = build_optimizer(adapted.params, core, accelerator.num_processes,
                                on_cpu=steps_optimizer_on_cpu(accelerator))
    scheduler = build_scheduler(optimizer, core, total)
    generator = torch.Generator(device=accelerator.device).manual_seed(begun.seed + accelerator.process_index)
    start_step = 0
    if resume is not None:
        load_trained_state_dict(adapted.transformer, resume_weights(resume, core, family.trained_component), core)
        start_step = int(ckpt.load_state(resume)["global_step"])
        ckpt.load_rng(resume, accelerator.process_index, generator)
        if adapted.ema is not None:
            ckpt.load_ema(resume / EMA_FILE, adapted.ema)
    model, optimizer = accelerator.prepare(adapted.transformer, optimizer)
    if resume is not None:
        # after prepare: sharded optimizer state only fits the prepared (sharded) parameters
        ckpt.load_optimizer_and_scheduler(resume, None if is_sharded(accelerator) else optimizer, scheduler)
        restore_sharded_state(accelerator, resume)
    return Accelerated(model=model, optimizer=optimizer, scheduler=scheduler, generator=generator,
                       batches_per_epoch=batches, steps_per_epoch=per_epoch, total_steps=total,
                       start_step=start_step)


def published_files(output: Path, core: CoreOptions) -> list[Path]:
    """The final model's files: the LoRA file (with a LyCORIS config or the other layouts asked for beside it) or
    the full component's folder."""
    files = [output]
    lycoris = output.parent / LYCORIS_CONFIG_FILE
    if core.model_type == "lora" and core.lora_type == "lycoris" and lycoris.is_file():
        files.append(lycoris)
    if core.model_type == "lora":
        files += [output.parent / lora_layout_file(name) for name in core.lora_save_formats]
    return files


def training_metadata(run: Run) -> dict[str, Any]:
    """What the final model's file header records about the run."""
    family = run.family
    return {"base_model": run.resolved.pretrained, "model_family": run.resolved.spec.name,
            "model_flavour": family.flavour.name if family.flavour else None,
            "config": run.config.to_file_dict()}
