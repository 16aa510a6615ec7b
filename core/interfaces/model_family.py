"""The ModelFamily interface: everything the training engine needs to know about one architecture."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from simpletuner.core.specs import Flavour, ModelFamilySpec


class ModelFamily(ABC):
    """One model architecture (Flux, Sana, PixArt, ...), built by its spec's factory for a training run.

    The spec (:class:`~simpletuner.core.specs.ModelFamilySpec`) holds what can be known without importing torch:
    flavours, supported adapter types and precisions, memory presets. This class holds behaviour: loading
    components with ``from_pretrained`` (a Hub id or a local diffusers folder), encoding text into a cacheable dict
    of tensors, encoding images into latents, sampling noise and timesteps and computing the training target,
    calling the transformer, the default LoRA targets, modules kept out of quantisation, and the validation
    pipeline. Implementations import torch and diffusers inside methods or in modules loaded by the factory.

    Example (a toy family; real ones return diffusers modules and tensors)::

        >>> class ToyFamily(ModelFamily):
        ...     lora_target_presets = {"attention": ("to_q", "to_k", "to_v", "to_out.0")}
        ...     default_lora_preset = "attention"
        ...     quantization_exclusions = ("norm", "proj_out")
        ...     components = ("transformer", "vae")
        ...     def load_components(self, pretrained, *, dtype, device, names=None):
        ...         return {name: object() for name in (names or self.components)}
        ...     def encode_text(self, components, prompts): return [{"prompt_embeds": p} for p in prompts]
        ...     def encode_latents(self, components, pixels): return pixels
        ...     def training_inputs(self, latents, text, generator): return {"noisy": latents, "target": latents}
        ...     def predict(self, components, inputs, text): return inputs["noisy"]
        ...     def validation_pipeline(self, components): return None
        >>> spec = ModelFamilySpec(name="toy", title="Toy", description="", factory=ToyFamily,
        ...                        flavours=(Flavour(name="base", pretrained="me/toy"),))
        >>> family = ToyFamily(spec, flavour=spec.flavour(None), options=None)
        >>> family.lora_targets()
        ('to_q', 'to_k', 'to_v', 'to_out.0')
        >>> sorted(family.load_components("me/toy", dtype=None, device="cpu", names=["vae"]))
        ['vae']
    """

    #: Named sets of module-name patterns a LoRA can target, e.g. ``{"attention": (...), "attention+mlp": (...)}``.
    lora_target_presets: Mapping[str, Sequence[str]] = {}
    #: The preset used when ``lora_target_preset`` is unset.
    default_lora_preset: str = ""
    #: Module-name patterns never quantised (norms, embedders, output projections).
    quantization_exclusions: Sequence[str] = ()
    #: Bucket edges are multiples of this many pixels.
    bucket_alignment: int = 64
    #: Every component of the pipeline folder (its sub-folders), e.g. ``("transformer", "vae", "text_encoder", ...)``.
    components: Sequence[str] = ()
    #: Component name → ``(module, class name)`` that the default :meth:`load_components` loads with
    #: ``from_pretrained(pretrained, subfolder=name)``.
    component_classes: Mapping[str, tuple[str, str]] = {}
    #: Components without weights (tokenizers, schedulers): loaded without a dtype, a device or eval mode.
    weightless_components: frozenset[str] = frozenset({"tokenizer", "tokenizer_2", "scheduler"})
    #: The components :meth:`encode_text` needs (freed once the text cache is complete).
    text_components: Sequence[str] = ()
    #: The components :meth:`encode_latents` needs (freed once the latent cache is complete).
    latent_components: Sequence[str] = ("vae",)
    #: The component that is trained; its adapter weights are saved under this prefix (diffusers' LoRA layout).
    trained_component: str = "transformer"
    #: Class names of the trained component's repeated blocks: FSDP2 shards each one as a unit unless
    #: ``fsdp_transformer_layer_cls_to_wrap`` says otherwise (empty: the model's own ``_no_split_modules``).
    block_classes: Sequence[str] = ()
    #: Whether :meth:`training_inputs` takes each sample's image geometry: the loop then calls it with a keyword
    #: ``geometry``, a ``B×6`` int64 tensor of (original height, original width, crop top, crop left, trained
    #: height, trained width) in pixels, for size and crop conditioning (SDXL's micro-conditioning).
    uses_image_geometry: bool = False

    def __init__(self, spec: ModelFamilySpec, flavour: Flavour | None, options: Any) -> None:
        self.spec = spec
        self.flavour = flavour
        self.options = options
        self.core: Any = None
        #: Set by the engine with ``flow_schedule_auto_shift`` (for a spec with ``resolution_shift``): the flow
        #: schedule's shift for a batch of images of that many transformer tokens, from the pipeline's scheduler
        #: config; None otherwise (``flow_schedule_shift`` applies).
        self.shift_for_tokens: Callable[[int], float] | None = None

    def lora_targets(self, preset: str | None = None) -> tuple[str, ...]:
        """Module-name patterns of a LoRA target preset (the default preset when None)."""
        name = preset or self.default_lora_preset
        if name not in self.lora_target_presets:
            known = ", ".join(self.lora_target_presets) or "none"
            raise ValueError(f"{self.spec.name} has no LoRA target preset {name!r}; known: {known}")
        return tuple(self.lora_target_presets[name])

    def configure(self, core_options: Any) -> None:
        """Receive the run's core options (e.g. ``flow_schedule_shift``) before training; kept as ``self.core``."""
        self.core = core_options

    def check_pretrained(self, pretrained: str) -> None:
        """Raise ``ValueError`` naming what is missing when ``pretrained`` is a local folder without the family's
        components; cheap (no weights are read), so the engine calls it before any heavy work. Hub ids pass."""
        folder = Path(pretrained).expanduser()
        looks_local = folder.is_absolute() or pretrained.startswith(".") or folder.exists()
        if not looks_local:
            return
        if not folder.is_dir():
            raise ValueError(f"pretrained_model_name_or_path {pretrained!r} is not an existing folder; give a local "
                             f"diffusers folder or a Hugging Face repository id")
        missing = [name for name in ("model_index.json", *self.components) if not (folder / name).exists()]
        if missing:
            raise ValueError(f"pretrained_model_name_or_path {str(folder)!r} is not a {self.spec.title} diffusers "
                             f"folder: missing {', '.join(missing)}")

    def text_cache_settings(self) -> dict[str, Any]:
        """Settings that change text embeddings (e.g. token limits); part of every text-cache key."""
        return {}

    def loss(self, prediction: Any, inputs: Mapping[str, Any]) -> Any:
        """The training loss of a batch: mean squared error against ``inputs['target']`` in float32."""
        import torch.nn.functional as functional

        return functional.mse_loss(prediction.float(), inputs["target"].float())

    def component_kwargs(self, name: str, dtype: Any) -> dict[str, Any]:
        """Extra ``from_pretrained`` arguments of one component: the run's dtype for components with weights.
        Override to keep a component in another dtype or to pick a weights variant."""
        return {} if name in self.weightless_components else {"torch_dtype": dtype}

    def load_components(self, pretrained: str, *, dtype: Any, device: Any,
                        names: Sequence[str] | None = None) -> dict[str, Any]:
        """Load the pipeline's components (transformer, vae, text encoders, tokenizers, scheduler) from a Hub id
        or a local diffusers folder through ``from_pretrained``; only ``names`` when given (all otherwise).

        The default loads :attr:`component_classes`; models go to ``device`` in eval mode without gradients. A
        component that cannot be loaded is a one-line error naming it and the folder."""
        import importlib

        loaded: dict[str, Any] = {}
        for name in names or self.components:
            if name not in self.component_classes:
                known = ", ".join(self.component_classes)
                raise ValueError(f"{self.spec.name} has no component {name!r}; components: {known}")
            module, class_name = self.component_classes[name]
            cls = getattr(importlib.import_module(module), class_name)
            try:
                component = cls.from_pretrained(pretrained, subfolder=name, **self.component_kwargs(name, dtype))
            except (OSError, ValueError) as exc:
                raise ValueError(f"cannot load the {self.spec.title} {name} from {pretrained!r} "
                                 f"({type(exc).__name__}: {exc}); give a {self.spec.title} diffusers folder or "
                                 f"repository") from None
            if name not in self.weightless_components:
                component = component.to(device).eval().requires_grad_(False)
            loaded[name] = component
        return loaded

    @abstractmethod
    def encode_text(self, components: Mapping[str, Any], prompts: Sequence[str]) -> list[dict[str, Any]]:
        """Encode prompts into one dict of tensors per prompt, ready to be cached on disk."""

    @abstractmethod
    def encode_latents(self, components: Mapping[str, Any], pixels: Any) -> Any:
        """Encode a batch of images (``B×3×H×W`` in [-1, 1]) into the latents the transformer trains on."""

    @abstractmethod
    def training_inputs(self, latents: Any, text: Mapping[str, Any], generator: Any) -> dict[str, Any]:
        """Sample noise and timesteps for a batch and return the transformer's inputs plus ``target``.

        ``text`` holds the batch's cached embeddings stacked along a first batch dimension; ``generator`` is the
        ``torch.Generator`` every random draw comes from (its state is checkpointed, so resumes are exact). A family
        with :attr:`uses_image_geometry` also receives ``geometry=`` (see there)."""

    @abstractmethod
    def predict(self, components: Mapping[str, Any], inputs: Mapping[str, Any], text: Mapping[str, Any]) -> Any:
        """Run the trained component (``components[trained_component]``) on prepared inputs and return the
        prediction compared with ``inputs['target']``."""

    @abstractmethod
    def validation_pipeline(self, components: Mapping[str, Any]) -> Any:
        """A diffusers pipeline built from the live components (adapter attached) for validation images."""


def model_config(module: Any) -> Any:
    """The diffusers config of a model that the engine may have wrapped for training: DDP and DeepSpeed's engine
    hold the model on ``.module`` (the engine's own ``config`` is DeepSpeed's), ``torch.compile`` on ``._orig_mod``.
    :meth:`ModelFamily.predict` reads its transformer's settings through this.

    Example::

        >>> from diffusers.configuration_utils import ConfigMixin, register_to_config
        >>> import torch
        >>> class Tiny(torch.nn.Module, ConfigMixin):
        ...     config_name = "config.json"
        ...     @register_to_config
        ...     def __init__(self, guidance_embeds: bool = True):
        ...         super().__init__()
        >>> class Engine(torch.nn.Module):  # a wrapper with a config of its own, as DeepSpeed's engine has
        ...     def __init__(self, module):
        ...         super().__init__()
        ...         self.module, self.config = module, {"train_batch_size": 1}
        >>> model_config(Engine(Tiny())).guidance_embeds
        True
    """
    from diffusers.configuration_utils import ConfigMixin

    inner = module
    while not isinstance(inner, ConfigMixin):
        unwrapped = getattr(inner, "_orig_mod", None)
        if unwrapped is None:
            unwrapped = getattr(inner, "module", None)
        if unwrapped is None:
            break  # not a wrapper: a stand-in that carries a config of its own
        inner = unwrapped
    config = getattr(inner, "config", None)
    if config is None:
        raise TypeError(f"{type(module).__name__} has no diffusers config, nor wraps a model that has one")
    return config
