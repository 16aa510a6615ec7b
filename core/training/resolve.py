"""Everything a run can check before any heavy work: the family and flavour, the weights location, the output
folder. Each problem is a one-line :class:`TrainingSetupError` that says what to fix.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from simpletuner.core.config.loading import LoadedEnvironment
from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.interfaces import ModelFamily
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import ModelFamilySpec
from simpletuner.core.training.lycoris import lycoris_problems
from simpletuner.core.workspace import Workspace


class TrainingSetupError(SimpleTunerError):
    """A run that cannot start; the message names the problem and the fix."""


@attrs.frozen
class ResolvedRun:
    """The pieces of a run known before loading any model."""

    spec: ModelFamilySpec
    family: ModelFamily
    pretrained: str
    vae_source: str
    output_dir: Path
    run_name: str


def _local_or_hub(value: str, workspace: Workspace, env_dir: Path) -> str:
    """A local folder as an absolute path (workspace- or environment-relative), anything else as written."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    resolved = workspace.resolve_config_path(value, env_dir)
    return str(resolved) if resolved.exists() or value.startswith(".") else value


def resolve_run(loaded: LoadedEnvironment, workspace: Workspace, registry: Registry) -> ResolvedRun:
    """Resolve and check the family, flavour, weights folder and output folder of an environment."""
    core = loaded.config.core
    if core.model_family is None:
        raise TrainingSetupError("model_family is not set; set it (e.g. flux) in config.json")
    spec = registry.model_family(core.model_family)
    flavour = spec.flavour(core.model_flavour)
    if flavour is None:
        names = ", ".join(f.name for f in spec.flavours)
        raise TrainingSetupError(f"{spec.name} has no flavour {core.model_flavour!r}; choose one of {names}")
    if core.model_type == "lora" and core.lora_type not in spec.lora_types:
        raise TrainingSetupError(f"{spec.name} does not support lora_type {core.lora_type!r}; use one of "
                                 f"{', '.join(spec.lora_types)}")
    if core.model_type == "lora" and core.lora_type == "lycoris":
        if loaded.lycoris_config is None:
            raise TrainingSetupError("lora_type is 'lycoris' but no lycoris_config.json was found; write one in the "
                                     "environment folder or set lycoris_config")
        problems = lycoris_problems(loaded.lycoris_config)
        if problems:
            raise TrainingSetupError("lycoris config: " + "; ".join(problems))
    family: ModelFamily = spec.build(flavour, loaded.config.options_for(spec))
    family.configure(core)
    pretrained = _local_or_hub(core.pretrained_model_name_or_path or flavour.pretrained, workspace,
                               loaded.environment.path)
    try:
        family.check_pretrained(pretrained)
        if core.flow_schedule_auto_shift:
            from simpletuner.core.training.flow_matching import resolution_shift  # imports torch

            family.shift_for_tokens = resolution_shift(pretrained).shift
        if core.pretrained_vae_model_name_or_path:
            vae_source = _local_or_hub(core.pretrained_vae_model_name_or_path, workspace, loaded.environment.path)
        else:
            vae_source = pretrained
    except ValueError as exc:
        raise TrainingSetupError(str(exc)) from None
    if core.lora_target_preset is not None:
        try:
            family.lora_targets(core.lora_target_preset)
        except ValueError as exc:
            raise TrainingSetupError(f"lora_target_preset: {exc}") from None
    output_dir = workspace.resolve(core.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise TrainingSetupError(f"output_dir {output_dir} is a file; point output_dir at a folder")
    return ResolvedRun(spec=spec, family=family, pretrained=pretrained, vae_source=vae_source,
                       output_dir=output_dir, run_name=core.tracker_run_name)
