"""The usage code of a model card runs as written: for every installed family with a tiny model and every kind of
output (LoRA, LyCORIS LoKr, full rank), a few training steps on the tiny pipeline are published to a local folder,
the card's Python block is executed with only ``"cuda"`` turned into ``"cpu"``, and the image it saves differs from
the base model's."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from tiny_models import build_tiny
from usage_code import run_as_written

from simpletuner.core.cli.demo_commands import make_demo_images
from simpletuner.core.events import EVENTS_FILE, read_events
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import Usage
from simpletuner.core.workspace import WORKSPACE_ENV_VAR, Workspace

#: Every installed family that declares a tiny model (the built-in ones and those of installed plugins).
FAMILIES = tuple(sorted(name for name, spec in Registry().model_families().items() if spec.tiny is not None))
KINDS = {"lora": {}, "lycoris": {"lora_type": "lycoris"}, "full": {"model_type": "full", "learning_rate": 1e-3}}
LOKR = {"algo": "lokr", "multiplier": 1.0, "linear_dim": 10000, "linear_alpha": 1, "factor": 8}
#: The example call the cards render from the training config below (with the guidance a flavour presets, if any).
CALL = re.compile(r'image = pipeline\(prompt="a photo", num_inference_steps=2, '
                  r'(?:guidance_scale=(?P<guidance>[\d.]+), )?'
                  r'width=64, height=64, generator=torch\.manual_seed\(42\)\)\.images\[0\]')

pytestmark = pytest.mark.timeout(300)


def _reset_accelerate() -> None:
    """Each in-process run builds its own Accelerator; accelerate keeps process-wide singletons."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    PartialState._reset_state()


def _train_and_publish(workspace: Workspace, registry: Registry, family: str, kind: str, model: Path) -> Path:
    """Train a few steps and publish to the run's ``published`` folder; returns the run folder."""
    from simpletuner.core.config import load_environment
    from simpletuner.core.environments import EnvironmentStore
    from simpletuner.core.training.run import train

    name = f"{family}-{kind}"
    data_dir = workspace.datasets_dir / family
    if not data_dir.is_dir():
        make_demo_images(data_dir, 1)
    env_dir = workspace.configs_dir / name
    env_dir.mkdir(parents=True)
    tiny = registry.model_family(family).tiny
    assert tiny is not None
    # a high learning rate: a few Adam steps move every trained weight (LoRA's B and LoKr's w2 start at zero)
    (env_dir / "config.json").write_text(json.dumps({
        **tiny.settings, "model_family": family, "pretrained_model_name_or_path": str(model),
        "learning_rate": 5e-2, "max_train_steps": 3, "num_train_epochs": 0, "train_batch_size": 1, "seed": 7,
        "resolution": 64, "resolution_type": "pixel", "mixed_precision": "no", "checkpointing_steps": 0,
        "output_dir": f"output/{name}", "report_to": "none", "validation_resolution": "64",
        "validation_num_inference_steps": 2, "publish_to": ["local"], **KINDS[kind],
    }))
    if kind == "lycoris":
        preset = {"target_module": _attention_classes(registry, family, model)}
        (env_dir / "lycoris_config.json").write_text(json.dumps({**LOKR, "apply_preset": preset}))
    (env_dir / "multidatabackend.json").write_text(json.dumps([
        {"id": "shapes", "instance_data_dir": str(data_dir), "caption_strategy": "textfile",
         "cache_dir_vae": f"cache/{family}/vae"},
        {"id": "embeds", "dataset_type": "text_embeds", "default": True, "cache_dir": f"cache/{family}/text"},
    ]))
    try:
        result = train(load_environment(workspace, EnvironmentStore(workspace.configs_dir), name, registry),
                       workspace, registry)
    finally:
        _reset_accelerate()
    return result.run_dir


def _attention_classes(registry: Registry, family: str, model: Path) -> list[str]:
    """Class names of the trained component's attention modules (those holding a ``to_q``): LyCORIS targets them."""
    import diffusers

    component = registry.model_family(family).build(None, None).trained_component
    class_name = json.loads((model / "model_index.json").read_text())[component][1]
    module = getattr(diffusers, class_name).from_pretrained(model, subfolder=component)
    return sorted({type(m).__name__ for m in module.modules() if hasattr(m, "to_q")})


@pytest.fixture(scope="session")
def models(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``models(family)``: the family's tiny pipeline folder (the shared fixture's where there is one)."""
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            if family in ("flux", "sana", "pixart"):  # the folders the other family tests build
                built[family] = request.getfixturevalue(f"{family}_folder")
            else:
                built[family] = build_tiny(family, tmp_path_factory.mktemp(family))
        return built[family]

    return get


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory, models: Callable[[str], Path],
         registry: Registry) -> Iterator[Callable[[str, str], Path]]:
    """``runs(family, kind)``: the run folder of that family and kind, trained and published once per session."""
    root = tmp_path_factory.mktemp("usage-workspace")
    workspace = Workspace(root)
    done: dict[tuple[str, str], Path] = {}

    def get(family: str, kind: str) -> Path:
        if (family, kind) not in done:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv(WORKSPACE_ENV_VAR, str(root))
                done[family, kind] = _train_and_publish(workspace, registry, family, kind, models(family))
        return done[family, kind]

    yield get


@pytest.fixture(scope="session")
def base_image(models: Callable[[str], Path], registry: Registry) -> Callable[[str, float | None], np.ndarray]:
    """``base_image(family, guidance)``: the base model's image for :data:`CALL`, from the family's pipeline class."""
    done: dict[tuple[str, float | None], np.ndarray] = {}

    def get(family: str, guidance: float | None) -> np.ndarray:
        if (family, guidance) not in done:
            import diffusers
            import torch

            pipeline_class = getattr(diffusers, registry.model_family(family).usage.pipeline.partition(":")[2])
            pipeline = pipeline_class.from_pretrained(str(models(family)), dtype=torch.bfloat16).to("cpu")
            extra = {} if guidance is None else {"guidance_scale": guidance}
            image = pipeline(prompt="a photo", num_inference_steps=2, width=64, height=64,
                             generator=torch.manual_seed(42), **extra).images[0]
            done[family, guidance] = np.asarray(image, dtype=np.int16)
        return done[family, guidance]

    return get


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("family", FAMILIES)
def test_the_cards_code_loads_the_output_into_the_stock_pipeline(
        family: str, kind: str, runs: Callable[[str, str], Path], base_image: Callable[[str, float | None], np.ndarray],
        registry: Registry, tmp_path: Path) -> None:
    run = runs(family, kind)
    folder = run / "published"
    code, image, future_warnings = run_as_written(folder / "README.md", tmp_path)
    pipeline_class = registry.model_family(family).usage.pipeline.partition(":")[2]
    call = CALL.search(code)
    assert f"pipeline = {pipeline_class}.from_pretrained(" in code and call, code
    loads_itself = registry.model_family(family).usage.lora is None  # the pipeline's own load_lora_weights
    assert ("pipeline.load_lora_weights(" in code) == (kind == "lora" and loads_itself)
    assert json.dumps(str(folder)) in code  # loads from where it was published
    assert future_warnings == []  # no deprecated argument (torch_dtype was one)
    base = base_image(family, float(call["guidance"]) if call["guidance"] else None)
    assert image.shape == base.shape == (64, 64, 3) and image.std() > 1
    # same seed, same pipeline: without the trained weights the image would be the same to the bit
    assert np.abs(image - base).mean() > 0.5, f"the {kind} output leaves the {family} image unchanged"
    # the run's last event carries the same code for the run folder (the web UI's job page shows it)
    [finished] = [e for e in read_events(run / EVENTS_FILE) if e["event"] == "finished"]
    assert finished["usage"] == code.replace(json.dumps(str(folder)), json.dumps(str(run)))


def test_every_installed_familys_usage_names_objects_that_exist(registry: Registry) -> None:
    for spec in registry.model_families().values():
        usage = spec.usage
        for path in filter(None, (usage.pipeline, usage.lora, usage.lycoris, usage.full)):
            module, _, name = path.partition(":")
            assert callable(getattr(importlib.import_module(module), name)), f"{spec.name}: {path}"


def test_a_usage_entry_must_be_an_import_path() -> None:
    with pytest.raises(ValueError, match="Usage.lora must be 'package.module:name', got 'load_lora'"):
        Usage(lora="load_lora")
    with pytest.raises(ValueError, match="Usage.pipeline must be"):
        Usage(pipeline="diffusers:FluxPipeline.from_pretrained")


def test_a_loaded_lycoris_network_moves_with_the_pipeline(runs: Callable[[str, str], Path], flux_folder: Path,
                                                          tmp_path: Path) -> None:
    import torch
    from diffusers import FluxPipeline

    from simpletuner.core.inference import load_lycoris

    pipeline = FluxPipeline.from_pretrained(str(flux_folder))
    network = load_lycoris(pipeline, runs("flux", "lycoris"))
    assert network.loras and {p.dtype for p in network.parameters()} == {torch.float32}
    pipeline.to(torch.float16)  # the move pipeline.to("cuda") makes, checked where no GPU is
    assert {p.dtype for p in network.parameters()} == {torch.float16}
    with pytest.raises(FileNotFoundError, match="holds no pytorch_lora_weights.safetensors"):
        load_lycoris(pipeline, tmp_path)
